//! How the hosted login page looks for an application's users: logo, colours and texts, per
//! language.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The texts a branding may set or reword.
pub const BRAND_TEXTS: [&str; 7] = [
    "title", "intro", "help", "username", "password", "answer", "continue",
];
/// The languages of the login page.
pub const LANGUAGES: [&str; 2] = ["en", "tr"];
const MAX_LOGO: usize = 64 * 1024;
const MAX_TEXT: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Branding {
    /// The logo, as a data URI: `data:image/png;base64,…` (or image/jpeg, image/svg+xml), at
    /// most 64 KiB of image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// `#rrggbb` (or `#rgb`): buttons and focus rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_color: Option<String>,
    /// `#rrggbb` (or `#rgb`): the page around the form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_color: Option<String>,
    /// Texts by language (`en`, `tr`): `title` (the heading), `intro` (under it), `help` (at
    /// the foot: whom to call), and page texts reworded (`username`, `password`, `answer`,
    /// `continue`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub texts: BTreeMap<String, BTreeMap<String, String>>,
}

/// A colour the stylesheet can take as it is.
pub fn is_color(c: &str) -> bool {
    let hex = c.strip_prefix('#').unwrap_or("");
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Branding {
    /// The logo's media type and bytes.
    pub fn logo_image(&self) -> Option<(&'static str, Vec<u8>)> {
        let logo = self.logo.as_deref()?;
        let (kind, data) = logo.strip_prefix("data:")?.split_once(";base64,")?;
        let kind = ["image/png", "image/jpeg", "image/svg+xml"]
            .into_iter()
            .find(|k| *k == kind)?;
        let bytes = data_encoding::BASE64.decode(data.trim().as_bytes()).ok()?;
        (bytes.len() <= MAX_LOGO).then_some((kind, bytes))
    }

    /// The text `key` in `lang`, when the branding sets it.
    pub fn text(&self, lang: &str, key: &str) -> Option<&str> {
        self.texts
            .get(lang)
            .and_then(|t| t.get(key))
            .map(String::as_str)
    }

    pub fn problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if self.logo.is_some() && self.logo_image().is_none() {
            errs.push(format!(
                "branding.logo: a data URI (data:image/png;base64,…, image/jpeg or image/svg+xml) of at most {} KiB",
                MAX_LOGO / 1024
            ));
        }
        for (what, c) in [
            ("primary_color", &self.primary_color),
            ("background_color", &self.background_color),
        ] {
            if let Some(c) = c
                && !is_color(c)
            {
                errs.push(format!("branding.{what}: '{c}' is not #rrggbb or #rgb"));
            }
        }
        for (lang, texts) in &self.texts {
            if !LANGUAGES.contains(&lang.as_str()) {
                errs.push(format!(
                    "branding.texts: language '{lang}' is not one of {}",
                    LANGUAGES.join(", ")
                ));
            }
            for (key, text) in texts {
                if !BRAND_TEXTS.contains(&key.as_str()) {
                    errs.push(format!(
                        "branding.texts.{lang}: '{key}' is not one of {}",
                        BRAND_TEXTS.join(", ")
                    ));
                }
                if text.chars().count() > MAX_TEXT || text.chars().any(char::is_control) {
                    errs.push(format!(
                        "branding.texts.{lang}.{key}: at most {MAX_TEXT} characters, no control characters"
                    ));
                }
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_logos_and_texts_are_checked() {
        let good = Branding {
            logo: Some(format!(
                "data:image/png;base64,{}",
                data_encoding::BASE64.encode(b"\x89PNG....")
            )),
            primary_color: Some("#0a7".into()),
            background_color: Some("#F4F5F7".into()),
            texts: BTreeMap::from([(
                "tr".into(),
                BTreeMap::from([("title".into(), "Contoso'ya giriş".into())]),
            )]),
        };
        assert!(good.problems().is_empty(), "{:?}", good.problems());
        assert_eq!(good.logo_image().map(|(k, _)| k), Some("image/png"));
        assert_eq!(good.text("tr", "title"), Some("Contoso'ya giriş"));
        let bad = Branding {
            logo: Some("https://example.org/logo.png".into()),
            primary_color: Some("red; } body { display: none".into()),
            background_color: None,
            texts: BTreeMap::from([(
                "de".into(),
                BTreeMap::from([("secret".into(), "x\ny".into())]),
            )]),
        };
        let p = bad.problems().join("\n");
        for want in [
            "branding.logo",
            "not #rrggbb",
            "language 'de'",
            "'secret' is not",
            "no control characters",
        ] {
            assert!(p.contains(want), "{p}");
        }
    }
}
