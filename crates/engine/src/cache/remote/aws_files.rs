//! The AWS shared files, `~/.aws/credentials` and `~/.aws/config` (or `AWS_SHARED_CREDENTIALS_FILE`
//! and `AWS_CONFIG_FILE`), for the profile `AWS_PROFILE` (else `default`): the keys, session
//! token, region and `endpoint_url` a user set up with `aws configure`. `object_store` reads
//! only the environment, so this fills in what the environment leaves unset; the environment
//! always wins. Only plain `key = value` lines are read (no `credential_process`, SSO or
//! `source_profile` chains: use the environment for those).

use std::collections::BTreeMap;
use std::path::PathBuf;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

/// What the files say for the profile.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AwsFiles {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    pub region: Option<String>,
    pub endpoint_url: Option<String>,
}

/// Reads both files (missing ones are empty).
pub fn load() -> AwsFiles {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let file = |var: &str, rel: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(rel)))
    };
    let read = |p: Option<PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok());
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    from_texts(
        read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials")).as_deref(),
        read(file("AWS_CONFIG_FILE", "config")).as_deref(),
        &profile,
    )
}

/// The profile's values: `[name]` in the credentials file, `[profile name]` (or `[default]`) in
/// the config file; the credentials file wins for keys both give.
pub fn from_texts(credentials: Option<&str>, config: Option<&str>, profile: &str) -> AwsFiles {
    let creds = credentials
        .map(|t| section(t, &[profile]))
        .unwrap_or_default();
    let config_header = format!("profile {profile}");
    let conf = config
        .map(|t| section(t, &[&config_header, profile]))
        .unwrap_or_default();
    let get = |k: &str| creds.get(k).or_else(|| conf.get(k)).cloned();
    AwsFiles {
        access_key_id: get("aws_access_key_id"),
        secret_access_key: get("aws_secret_access_key"),
        session_token: get("aws_session_token"),
        region: get("region"),
        endpoint_url: get("endpoint_url"),
    }
}

/// The `key = value` pairs of the first section whose header is one of `names`.
fn section(text: &str, names: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if inside {
                break;
            }
            inside = names.contains(&header.trim());
            continue;
        }
        if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
    }
    out
}

/// Sets on `builder` what the files give and the environment does not.
pub fn apply(mut builder: AmazonS3Builder, files: &AwsFiles) -> AmazonS3Builder {
    let unset = |var: &str| std::env::var_os(var).is_none();
    let pairs = [
        (
            "AWS_ACCESS_KEY_ID",
            AmazonS3ConfigKey::AccessKeyId,
            &files.access_key_id,
        ),
        (
            "AWS_SECRET_ACCESS_KEY",
            AmazonS3ConfigKey::SecretAccessKey,
            &files.secret_access_key,
        ),
        (
            "AWS_SESSION_TOKEN",
            AmazonS3ConfigKey::Token,
            &files.session_token,
        ),
        ("AWS_REGION", AmazonS3ConfigKey::Region, &files.region),
        (
            "AWS_ENDPOINT_URL",
            AmazonS3ConfigKey::Endpoint,
            &files.endpoint_url,
        ),
    ];
    // Keys from the files only as a pair: half a key from the environment and half from a file
    // would sign with a mismatched secret.
    let env_has_keys = !unset("AWS_ACCESS_KEY_ID") || !unset("AWS_SECRET_ACCESS_KEY");
    for (var, key, value) in pairs {
        let is_key = matches!(
            key,
            AmazonS3ConfigKey::AccessKeyId
                | AmazonS3ConfigKey::SecretAccessKey
                | AmazonS3ConfigKey::Token
        );
        if is_key && env_has_keys {
            continue;
        }
        if let Some(v) = value.as_ref().filter(|_| unset(var)) {
            builder = builder.with_config(key, v.clone());
        }
    }
    if unset("AWS_REGION") && unset("AWS_DEFAULT_REGION") && files.region.is_none() {
        builder = builder.with_region("us-east-1");
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_profile_from_both_files() {
        let creds = "[default]\naws_access_key_id = AK1\naws_secret_access_key=S1\n\n[ci]\naws_access_key_id = AK2\naws_secret_access_key = S2\n";
        let config = "[default]\nregion = eu-west-1\n[profile ci]\nregion = us-west-2\nendpoint_url = http://127.0.0.1:9000\n";
        let d = from_texts(Some(creds), Some(config), "default");
        assert_eq!(d.access_key_id.as_deref(), Some("AK1"));
        assert_eq!(d.secret_access_key.as_deref(), Some("S1"));
        assert_eq!(d.region.as_deref(), Some("eu-west-1"));
        assert_eq!(d.endpoint_url, None);
        let ci = from_texts(Some(creds), Some(config), "ci");
        assert_eq!(ci.access_key_id.as_deref(), Some("AK2"));
        assert_eq!(ci.region.as_deref(), Some("us-west-2"));
        assert_eq!(ci.endpoint_url.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(
            from_texts(None, None, "missing"),
            AwsFiles::default(),
            "absent files give nothing"
        );
    }
}
