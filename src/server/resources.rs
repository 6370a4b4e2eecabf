//! Resources: the raw upstream bodies as JSON documents, two fixed URIs and two templates.

use rmcp::{
    ErrorData as McpError,
    model::{ReadResourceResult, Resource, ResourceContents, ResourceTemplate},
};

use crate::upstream::{CityError, Upstream, UpstreamError};

const JSON: &str = "application/json";

pub fn list() -> Vec<Resource> {
    vec![
        Resource::new("aareguru://cities", "cities")
            .with_title("All Aare stations")
            .with_description(
                "Every station with slug, Bernese name, location, coordinates and current water \
                 temperature (raw /v2018/cities body).",
            )
            .with_mime_type(JSON),
        Resource::new("aareguru://widget", "widget")
            .with_title("Compact overview of all stations")
            .with_description(
                "Temperature, flow, flow danger level and weather for every station in one \
                 compact document (raw /v2018/widget body).",
            )
            .with_mime_type(JSON),
    ]
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("aareguru://current/{city}", "current")
            .with_title("Full current data for one station")
            .with_description(
                "Everything the API knows now for a station: water, flow, past 48 h, weather, \
                 sun (raw /v2018/current body). {city} is a slug such as bern or thun.",
            )
            .with_mime_type(JSON),
        ResourceTemplate::new("aareguru://today/{city}", "today")
            .with_title("Minimal current data for one station")
            .with_description(
                "Temperature and its Bernese description for a station (raw /v2018/today \
                 body). {city} is a slug such as bern or thun.",
            )
            .with_mime_type(JSON),
    ]
}

pub async fn read(upstream: &Upstream, uri: &str) -> Result<ReadResourceResult, McpError> {
    let body = match uri.strip_prefix("aareguru://") {
        Some("cities") => upstream.cities_raw().await.map_err(unavailable)?,
        Some("widget") => upstream.get("widget", &[]).await.map_err(unavailable)?,
        Some(rest) => {
            let (kind, city) = rest.split_once('/').unwrap_or((rest, ""));
            if !matches!(kind, "current" | "today") || city.is_empty() {
                return Err(not_found(uri));
            }
            let city = percent_decode(city);
            let station = upstream.resolve_city(&city).await.map_err(|e| match e {
                CityError::Unknown { .. } => McpError::resource_not_found(
                    format!("{e}"),
                    Some(serde_json::json!({"uri": uri})),
                ),
                CityError::Upstream(u) => unavailable(u),
            })?;
            if kind == "current" {
                upstream.current(&station.slug).await
            } else {
                upstream
                    .get("today", &[("city", station.slug.clone())])
                    .await
            }
            .map_err(unavailable)?
        }
        None => return Err(not_found(uri)),
    };
    let text = serde_json::to_string(&*body)
        .map_err(|e| McpError::internal_error(format!("cannot encode body: {e}"), None))?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(JSON),
    ]))
}

fn not_found(uri: &str) -> McpError {
    McpError::resource_not_found(
        format!(
            "no resource {uri:?}; available: aareguru://cities, aareguru://widget, \
             aareguru://current/{{city}}, aareguru://today/{{city}}"
        ),
        Some(serde_json::json!({"uri": uri})),
    )
}

fn unavailable(e: UpstreamError) -> McpError {
    McpError::internal_error(e.to_string(), None)
}

/// Decodes `%C3%A4`-style escapes so `aareguru://current/B%C3%A4rn` finds Bern.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn decodes_escapes_and_keeps_bad_ones() {
        assert_eq!(percent_decode("B%C3%A4rn"), "Bärn");
        assert_eq!(percent_decode("bern"), "bern");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
