//! Helpers for deserialising stage params that several kinds share.

use serde::{Deserialize, Deserializer};

/// Accepts `["a", "b"]` or the original's `"a,b, c"` (spaces stripped, as train_vae.py:126).
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v.into_iter().map(|s| s.trim().to_owned()).collect(),
        Either::Text(s) => s
            .split(',')
            .map(|x| x.trim().to_owned())
            .filter(|x| !x.is_empty())
            .collect(),
    })
}
