//! Resolving what a person types ("Bärn", " THUN ", "Bern, Schönau", "interlaken") to the
//! station slug the API expects.

use serde::Serialize;

/// One station as listed by `/v2018/cities`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Station {
    /// Lowercase slug sent upstream as `?city=`.
    pub slug: String,
    /// Display name in Bernese dialect, e.g. "Bärn".
    pub name: String,
    /// Longer location name, e.g. "Bern, Schönau".
    pub long_name: String,
}

/// Folds case, surrounding whitespace and German umlauts/accents so "Bärn", "BAERN" and "barn"
/// compare equal.
pub fn fold(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.trim().to_lowercase().chars() {
        match c {
            'ä' | 'à' | 'â' | 'á' => out.push('a'),
            'ö' | 'ô' | 'ó' => out.push('o'),
            'ü' | 'ù' | 'û' | 'ú' => out.push('u'),
            'é' | 'è' | 'ê' | 'ë' => out.push('e'),
            'ï' | 'î' => out.push('i'),
            'ç' => out.push('c'),
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ')
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Like [`fold`] but also spelling umlauts as "ae", "oe", "ue" the other way round.
fn fold_digraphs(input: &str) -> String {
    fold(input)
        .replace("ae", "a")
        .replace("oe", "o")
        .replace("ue", "u")
}

/// The station matching `input` by slug, name or long name; `None` when nothing matches.
pub fn resolve<'a>(input: &str, stations: &'a [Station]) -> Option<&'a Station> {
    let wanted = fold(input);
    if wanted.is_empty() {
        return None;
    }
    let exact = stations.iter().find(|s| {
        fold(&s.slug) == wanted || fold(&s.name) == wanted || fold(&s.long_name) == wanted
    });
    if exact.is_some() {
        return exact;
    }
    let wanted = fold_digraphs(input);
    stations.iter().find(|s| {
        fold_digraphs(&s.slug) == wanted
            || fold_digraphs(&s.name) == wanted
            || fold_digraphs(&s.long_name) == wanted
    })
}

/// "bern (Bärn), thun (Thun), …" for error messages.
pub fn describe_all(stations: &[Station]) -> String {
    stations
        .iter()
        .map(|s| {
            if fold(&s.name) == fold(&s.slug) {
                s.slug.clone()
            } else {
                format!("{} ({})", s.slug, s.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stations() -> Vec<Station> {
        [
            ("brienz", "Brienz", "Brienzwiler"),
            ("interlaken", "Interlake", "Ringgenberg, Goldswil"),
            ("thun", "Thun", "Thun"),
            ("bern", "Bärn", "Bern, Schönau"),
            ("biel", "Biu", "Brügg, Aegerten"),
            ("olten", "Oute", "Oute"),
            ("brugg", "Brugg AG", "Brugg, Argou"),
        ]
        .into_iter()
        .map(|(slug, name, long_name)| Station {
            slug: slug.into(),
            name: name.into(),
            long_name: long_name.into(),
        })
        .collect()
    }

    fn slug(input: &str) -> Option<String> {
        resolve(input, &stations()).map(|s| s.slug.clone())
    }

    #[test]
    fn slugs_names_and_long_names() {
        assert_eq!(slug("bern").as_deref(), Some("bern"));
        assert_eq!(slug("Bärn").as_deref(), Some("bern"));
        assert_eq!(slug(" THUN ").as_deref(), Some("thun"));
        assert_eq!(slug("Interlake").as_deref(), Some("interlaken"));
        assert_eq!(slug("Biu").as_deref(), Some("biel"));
        assert_eq!(slug("oute").as_deref(), Some("olten"));
        assert_eq!(slug("Bern, Schönau").as_deref(), Some("bern"));
        assert_eq!(slug("bern,  schonau").as_deref(), Some("bern"));
        assert_eq!(slug("brugg ag").as_deref(), Some("brugg"));
    }

    #[test]
    fn umlaut_spellings() {
        assert_eq!(slug("BAERN").as_deref(), Some("bern"));
        assert_eq!(slug("barn").as_deref(), Some("bern"));
        assert_eq!(slug("Bruegg, Aegerten").as_deref(), Some("biel"));
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(slug("Zurich"), None);
        assert_eq!(slug(""), None);
        assert_eq!(slug("   "), None);
        assert_eq!(slug("ber"), None);
    }

    #[test]
    fn description_lists_slugs_with_dialect_names() {
        let d = describe_all(&stations());
        assert!(
            d.starts_with("brienz, interlaken (Interlake), thun, bern (Bärn)"),
            "{d}"
        );
    }
}
