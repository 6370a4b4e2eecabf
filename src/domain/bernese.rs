//! English glosses for the Bernese German texts the API sends (temperature and flow scales, the
//! 2-hour forecast, weather words, weekdays). Texts we have no dictionary entry for still get a
//! gloss, derived from the number they describe, so real data never comes back unexplained.

/// Known texts, keyed by their normalised form (see [`normalise`]).
const DICTIONARY: &[(&str, &str)] = &[
    // temperature_scale and temperature_text(_short)
    (
        "iglu boue bringts meh",
        "building an igloo makes more sense (ice cold)",
    ),
    ("uschaflig chaut", "unbearably cold"),
    ("uuuh chaut", "brrr, cold"),
    ("ender früsch", "rather fresh"),
    ("me chas wage", "you can risk it"),
    ("rächt guet", "quite good"),
    ("rächt gut", "quite good"),
    ("ja eh!", "oh yes, absolutely!"),
    ("plütterwarm", "nice and warm for splashing about"),
    ("spaghettiwasser", "spaghetti water (very warm)"),
    (
        "chasch strahlend feini wienerli choche",
        "you could cook fine sausages in it (hot)",
    ),
    ("las vilech gschider lasii", "maybe better to leave it"),
    (
        "mit de boumstäm schwümme",
        "swimming with the tree trunks (high water, driftwood)",
    ),
    ("zvil boumstäm", "too many tree trunks"),
    ("viu chauts wasser", "lots of cold water"),
    ("viu wasser", "lots of water"),
    ("mit viu wasser", "with lots of water"),
    (
        "rächt gut. mit viu wasser",
        "quite good, with lots of water",
    ),
    (
        "rächt guet. mit viu wasser",
        "quite good, with lots of water",
    ),
    // flow_scale and flow_text
    ("nid viu", "not much"),
    ("eher wenig", "rather little"),
    ("ganz gäbig", "just right"),
    ("ender viu", "rather a lot"),
    ("mega viu", "a great deal"),
    ("brutal viu!", "an enormous amount!"),
    ("extrem viu!", "an extreme amount!"),
    ("hochwasser!", "flood!"),
    ("mega hochwasser!", "major flood!"),
    ("jahrhunderthochwasser!", "flood of the century!"),
    // forecast2h_text
    ("blibt äuä öpe glich", "will probably stay about the same"),
    ("wird äuä chli wärmer", "will probably get a little warmer"),
    ("wird äuä chli chäuter", "will probably get a little colder"),
    ("wird äuä wärmer", "will probably get warmer"),
    ("wird äuä chäuter", "will probably get colder"),
    // weather symbol texts (syt)
    ("sunnig", "sunny"),
    ("sunne", "sunny"),
    ("heiter", "fair"),
    ("liecht bewöukt", "partly cloudy"),
    ("bewöukt", "cloudy"),
    ("starch bewöukt", "overcast"),
    ("näbu", "fog"),
    ("e gutsch", "a shower"),
    ("gutsch", "a shower"),
    ("räge", "rain"),
    ("liechte räge", "light rain"),
    ("starche räge", "heavy rain"),
    ("gwitter", "thunderstorm"),
    ("schnee", "snow"),
    ("schneeräge", "sleet"),
    // weekdays
    ("mänti", "Monday"),
    ("zischti", "Tuesday"),
    ("mitwuch", "Wednesday"),
    ("donschti", "Thursday"),
    ("friti", "Friday"),
    ("samschti", "Saturday"),
    ("sunnti", "Sunday"),
];

/// Lowercase, trimmed, with emoji and other symbols dropped and inner whitespace folded, so
/// `"⚠️ mega viu"` finds `"mega viu"`.
pub fn normalise(text: &str) -> String {
    let kept: String = text
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || matches!(c, '!' | '.' | ','))
        .collect();
    kept.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The dictionary gloss for a text, if we know it.
pub fn lookup(text: &str) -> Option<&'static str> {
    let key = normalise(text);
    DICTIONARY
        .iter()
        .find(|(bernese, _)| *bernese == key)
        .map(|(_, english)| *english)
}

/// A gloss for a water temperature text: the dictionary's, or one derived from the temperature.
pub fn gloss_temperature(text: &str, temperature: Option<f64>) -> Option<String> {
    if let Some(g) = lookup(text) {
        return Some(g.to_string());
    }
    temperature.map(|t| format!("{} water", describe_temperature(t)))
}

/// A gloss for a flow text: the dictionary's, or one derived from the flow in m³/s.
pub fn gloss_flow(text: &str, flow: Option<f64>) -> Option<String> {
    if let Some(g) = lookup(text) {
        return Some(g.to_string());
    }
    flow.map(|f| describe_flow(f).to_string())
}

/// A gloss for any other text (forecast, weather words): dictionary only.
pub fn gloss(text: &str) -> Option<&'static str> {
    lookup(text)
}

/// Plain-English band for a water temperature, aligned with the upstream's temperature scale.
pub fn describe_temperature(t: f64) -> &'static str {
    match t {
        t if t < 12.0 => "ice cold",
        t if t < 16.0 => "very cold",
        t if t < 17.0 => "cold",
        t if t < 18.0 => "fresh",
        t if t < 19.0 => "pleasant",
        t if t < 21.0 => "good",
        t if t < 22.0 => "warm",
        _ => "very warm",
    }
}

/// Plain-English band for a flow, aligned with the upstream's flow scale.
pub fn describe_flow(f: f64) -> &'static str {
    match f {
        f if f < 100.0 => "low flow",
        f if f < 150.0 => "rather low flow",
        f if f < 200.0 => "normal flow",
        f if f < 250.0 => "rather high flow",
        f if f < 300.0 => "high flow",
        f if f < 430.0 => "very high flow",
        _ => "flood",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text of the real scales in the recorded bodies has a dictionary gloss.
    #[test]
    fn real_scale_texts_all_have_glosses() {
        let body: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/aareguru/current_bern.json"
        ))
        .unwrap();
        let aare = &body["aare"];
        for scale in ["temperature_scale", "flow_scale"] {
            for entry in aare[scale].as_array().unwrap() {
                let text = entry["text"].as_str().unwrap();
                assert!(lookup(text).is_some(), "no gloss for {scale} text {text:?}");
            }
        }
        for field in [
            "temperature_text",
            "temperature_text_short",
            "flow_text",
            "forecast2h_text",
        ] {
            let text = aare[field].as_str().unwrap();
            assert!(lookup(text).is_some(), "no gloss for {field} {text:?}");
        }
    }

    #[test]
    fn emoji_and_case_do_not_matter() {
        assert_eq!(lookup("⚠️ mega viu"), Some("a great deal"));
        assert_eq!(lookup("  Uschaflig   CHAUT "), Some("unbearably cold"));
    }

    #[test]
    fn unknown_texts_fall_back_to_the_value() {
        assert_eq!(
            gloss_temperature("Öppis Nöis", Some(17.5)).as_deref(),
            Some("fresh water")
        );
        assert_eq!(
            gloss_flow("öppis", Some(320.0)).as_deref(),
            Some("very high flow")
        );
        assert_eq!(gloss_temperature("Öppis Nöis", None), None);
    }
}
