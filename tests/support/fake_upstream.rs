//! A fake Aareguru API over real HTTP, serving the recorded bodies in `tests/fixtures/aareguru/`.
//! Used in-process by the integration tests and as a program (`examples/fake_upstream.rs`) by the
//! interop scripts. It can fail on purpose (HTTP 500, hang, garbage) and counts every request.
//!
//! What is recorded and what is synthesised:
//! - `/v2018/cities`, `/v2018/widget`, `/v2018/current?city=bern`, `/v2018/today?city=interlaken`
//!   are the recorded bodies, byte for byte.
//! - Like the real API, `/current` and `/today` answer Bern's data for an unknown city.
//! - `/current` for another known station is Bern's body with that station's name and values from
//!   the recorded `/cities` overview (and flow from the widget where it has one): no real body
//!   for another station exists.
//! - `/history` has no recorded body anywhere. This one answers the shape one public client
//!   parses, `{status, data: {temperature: [[ts, v]..], flow: [[ts, v]..]}}`, built from Bern's
//!   recorded 48 h `aarepast` series shifted to end at `end`; 400 without or with an unknown city.

#![allow(dead_code)]

use parking_lot::Mutex;
use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use warp::{Filter, http::StatusCode, reply::Response};

const CITIES: &str = include_str!("../fixtures/aareguru/cities.json");
const CURRENT_BERN: &str = include_str!("../fixtures/aareguru/current_bern.json");
const TODAY_INTERLAKEN: &str = include_str!("../fixtures/aareguru/today_interlaken_2024-08.json");
const WIDGET: &str = include_str!("../fixtures/aareguru/widget_2024-08_trimmed.json");

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Serve the fixtures.
    Normal,
    /// Answer every request with this HTTP status.
    Status(u16),
    /// Accept the request and never answer.
    Hang,
    /// Answer 200 with a body that is not JSON.
    Garbage,
}

impl Behaviour {
    pub fn parse(s: &str) -> Option<Behaviour> {
        Some(match s {
            "normal" | "ok" => Behaviour::Normal,
            "hang" => Behaviour::Hang,
            "garbage" => Behaviour::Garbage,
            "error" => Behaviour::Status(500),
            other => Behaviour::Status(other.strip_prefix("status-")?.parse().ok()?),
        })
    }
}

/// Shared state: behaviour (switchable at run time) and request log.
pub struct State {
    behaviour: Mutex<Behaviour>,
    /// Per-city behaviour overrides, e.g. make only `thun` fail.
    city_behaviour: Mutex<HashMap<String, Behaviour>>,
    /// Extra latency before answering, to widen the window for concurrent misses.
    delay: Mutex<Duration>,
    /// Every request as `endpoint?query`, in arrival order.
    requests: Mutex<Vec<String>>,
    /// Bodies to serve for `/current?city=X` instead of the fixtures.
    current_overrides: Mutex<HashMap<String, String>>,
    /// Body to serve for `/cities` instead of the fixture.
    cities_override: Mutex<Option<String>>,
}

impl State {
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock() = b;
    }
    pub fn set_city_behaviour(&self, city: &str, b: Behaviour) {
        self.city_behaviour.lock().insert(city.to_string(), b);
    }
    /// Serve `body` for `/current?city=city` from now on.
    pub fn set_current_body(&self, city: &str, body: String) {
        self.current_overrides.lock().insert(city.to_string(), body);
    }
    /// Serve `body` for `/cities` from now on.
    pub fn set_cities_body(&self, body: String) {
        *self.cities_override.lock() = Some(body);
    }
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock() = d;
    }
    /// All requests so far, as `endpoint?query`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().clone()
    }
    /// How many requests hit `endpoint` (e.g. "current") with `city` (any city when `None`).
    pub fn count(&self, endpoint: &str, city: Option<&str>) -> usize {
        self.requests
            .lock()
            .iter()
            .filter(|r| {
                let (e, q) = r.split_once('?').unwrap_or((r, ""));
                e == endpoint
                    && city.is_none_or(|c| q.split('&').any(|kv| kv == format!("city={c}")))
            })
            .count()
    }
    fn stats(&self) -> Value {
        let requests = self.requests();
        let mut by_endpoint: HashMap<String, usize> = HashMap::new();
        for r in &requests {
            *by_endpoint
                .entry(r.split('?').next().unwrap_or("").to_string())
                .or_default() += 1;
        }
        json!({"total": requests.len(), "by_endpoint": by_endpoint, "requests": requests})
    }
}

/// A running fake; dropping it does not stop the server (tests end with the process).
pub struct FakeUpstream {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl FakeUpstream {
    /// Starts on 127.0.0.1 with an OS-chosen port.
    pub async fn start(behaviour: Behaviour) -> FakeUpstream {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), behaviour).await
    }

    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> FakeUpstream {
        let state = Arc::new(State {
            behaviour: Mutex::new(behaviour),
            city_behaviour: Mutex::new(HashMap::new()),
            delay: Mutex::new(Duration::ZERO),
            requests: Mutex::new(Vec::new()),
            current_overrides: Mutex::new(HashMap::new()),
            cities_override: Mutex::new(None),
        });
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind fake upstream");
        let addr = listener.local_addr().unwrap();
        let routes = routes(state.clone());
        tokio::spawn(warp::serve(routes).incoming(listener).run());
        FakeUpstream { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn routes(
    state: Arc<State>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let api_state = state.clone();
    let api = warp::path("v2018")
        .and(warp::path::param::<String>())
        .and(warp::path::end())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .then(move |endpoint: String, query: String| {
            let state = api_state.clone();
            async move { answer(&state, &endpoint, &query).await }
        });
    let control_state = state.clone();
    let control = warp::path!("__control")
        .and(warp::query::<HashMap<String, String>>())
        .map(move |q: HashMap<String, String>| {
            if let Some(b) = q.get("mode").and_then(|m| Behaviour::parse(m)) {
                match q.get("city") {
                    Some(c) => control_state.set_city_behaviour(c, b),
                    None => control_state.set_behaviour(b),
                }
            }
            if let Some(ms) = q.get("delay_ms").and_then(|d| d.parse().ok()) {
                control_state.set_delay(Duration::from_millis(ms));
            }
            json_response(StatusCode::OK, json!({"ok": true}).to_string())
        });
    let stats_state = state;
    let stats = warp::path!("__stats")
        .map(move || json_response(StatusCode::OK, stats_state.stats().to_string()));
    api.or(control).unify().or(stats).unify()
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

async fn answer(state: &State, endpoint: &str, query: &str) -> Response {
    state.requests.lock().push(format!("{endpoint}?{query}"));
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let city = params.get("city").map(String::as_str);
    let behaviour = city
        .and_then(|c| state.city_behaviour.lock().get(c).copied())
        .unwrap_or(*state.behaviour.lock());
    let delay = *state.delay.lock();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match behaviour {
        Behaviour::Normal => {}
        Behaviour::Status(code) => {
            return json_response(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "{\"error\":\"fake upstream failure\"}".into(),
            );
        }
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Behaviour::Garbage => {
            let mut r = Response::new("<html><body>502 Bad Gateway</body></html>".into());
            r.headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            return r;
        }
    }
    match endpoint {
        "cities" => {
            let body = state.cities_override.lock().clone();
            json_response(StatusCode::OK, body.unwrap_or_else(|| CITIES.into()))
        }
        "widget" => json_response(StatusCode::OK, WIDGET.into()),
        "current" => {
            let city = city.unwrap_or("bern");
            let body = state.current_overrides.lock().get(city).cloned();
            json_response(StatusCode::OK, body.unwrap_or_else(|| current(city)))
        }
        "today" => json_response(StatusCode::OK, today(city.unwrap_or("bern"))),
        "history" => history(city, &params),
        _ => json_response(StatusCode::NOT_FOUND, "{\"error\":\"not found\"}".into()),
    }
}

fn overview(city: &str) -> Option<Value> {
    let cities: Value = serde_json::from_str(CITIES).unwrap();
    cities
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["city"] == city)
        .cloned()
}

fn current(city: &str) -> String {
    let Some(info) = overview(city).filter(|_| city != "bern") else {
        // Bern, and (like the real API) any unknown city.
        return CURRENT_BERN.to_string();
    };
    let mut body: Value = serde_json::from_str(CURRENT_BERN).unwrap();
    let aare = &mut body["aare"];
    aare["location"] = info["name"].clone();
    aare["location_long"] = info["longname"].clone();
    aare["temperature"] = info["aare"].clone();
    aare["temperature_prec"] = info["aare_prec"].clone();
    aare["coordinates"] = info["coordinates"].clone();
    let widget: Value = serde_json::from_str(WIDGET).unwrap();
    if let Some(flow) = widget["values"][city]["flow"].as_f64() {
        aare["flow"] = json!(flow);
    }
    body.to_string()
}

fn today(city: &str) -> String {
    if city == "interlaken" {
        return TODAY_INTERLAKEN.to_string();
    }
    let info = overview(city).unwrap_or_else(|| overview("bern").unwrap());
    json!({
        "aare": info["aare"], "aare_prec": info["aare_prec"],
        "text": "Uschaflig chaut", "text_short": "Uuuh chaut",
        "time": info["time"], "name": info["name"], "longname": info["longname"],
    })
    .to_string()
}

fn history(city: Option<&str>, params: &HashMap<String, String>) -> Response {
    if city.filter(|c| overview(c).is_some()).is_none() {
        return json_response(
            StatusCode::BAD_REQUEST,
            "{\"error\":\"city missing or unknown\"}".into(),
        );
    }
    let num = |k: &str| params.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(start), Some(end)) = (num("start"), num("end")) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            "{\"error\":\"start and end must be Unix seconds in this fake\"}".into(),
        );
    };
    let body: Value = serde_json::from_str(CURRENT_BERN).unwrap();
    let past = body["aarepast"].as_array().unwrap();
    let last = past
        .last()
        .and_then(|p| p["timestamp"].as_i64())
        .unwrap_or(0);
    let mut temperature = vec![];
    let mut flow = vec![];
    for p in past {
        let ts = p["timestamp"].as_i64().unwrap_or(0) - last + end;
        if ts < start || ts > end {
            continue;
        }
        temperature.push(json!([ts, p["temperature"]]));
        flow.push(json!([ts, p["flow"]]));
    }
    json_response(
        StatusCode::OK,
        json!({"status": "ok", "data": {"temperature": temperature, "flow": flow}}).to_string(),
    )
}
