//! The runner's system id, stored in `.runner_system_id` next to `config.toml`. GitLab keeps
//! one "runner manager" per (runner, system id), so the id must survive restarts.

use std::path::Path;

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::error::ConfigError;

/// File name of the system id, in the config directory.
pub const FILE_NAME: &str = ".runner_system_id";

const ID_LEN: usize = 12;
const RANDOM_CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const MACHINE_ID_FILES: [&str; 2] = ["/var/lib/dbus/machine-id", "/etc/machine-id"];

/// Returns the stored system id, creating and storing one when the file is missing or does
/// not hold a valid id. A failed write is logged and the new id still returned, as
/// gitlab-runner does: the runner can work, it just gets a new id next start.
pub fn load_or_create(config_dir: &Path) -> Result<String, ConfigError> {
    let path = config_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) if is_valid(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ConfigError::Read { path, source }),
    }
    let id = generate(read_machine_id().as_deref());
    if let Err(e) = write(config_dir, &path, &id) {
        tracing::warn!(
            state_file = %path.display(),
            system_id = %id,
            error = %e,
            "could not save the new system id; write it to the file by hand to keep this runner's identity"
        );
    }
    Ok(id)
}

/// `^[sr]_[0-9a-zA-Z]{12}$`
pub fn is_valid(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 2 + ID_LEN
        && matches!(bytes[0], b's' | b'r')
        && bytes[1] == b'_'
        && bytes[2..].iter().all(u8::is_ascii_alphanumeric)
}

/// `s_` + the first 12 hex digits of HMAC-SHA256(key = machine id, "gitlab-runner"), or `r_` +
/// 12 random alphanumerics without a machine id.
pub fn generate(machine_id: Option<&str>) -> String {
    if let Some(machine_id) = machine_id.filter(|m| !m.is_empty())
        && let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(machine_id.as_bytes())
    {
        mac.update(b"gitlab-runner");
        let digest = hex::encode(mac.finalize().into_bytes());
        return format!("s_{}", &digest[..ID_LEN]);
    }
    let mut rng = rand::rng();
    let random: String = (0..ID_LEN)
        .map(|_| char::from(RANDOM_CHARSET[rng.random_range(0..RANDOM_CHARSET.len())]))
        .collect();
    format!("r_{random}")
}

fn read_machine_id() -> Option<String> {
    MACHINE_ID_FILES.iter().find_map(|f| {
        std::fs::read_to_string(f)
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

fn write(dir: &Path, path: &Path, id: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_id_gives_stable_hmac_id() {
        let a = generate(Some("0123456789abcdef0123456789abcdef"));
        let b = generate(Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(a, b);
        assert!(a.starts_with("s_"));
        assert!(is_valid(&a));
        // Expected values computed outside Rust (Python's hmac module).
        assert_eq!(a, "s_ee3af03959fe");
        assert_eq!(generate(Some("abc")), "s_2410a1b63c93");
    }

    #[test]
    fn random_fallback() {
        let a = generate(None);
        assert!(a.starts_with("r_") && is_valid(&a));
        assert_ne!(a, generate(None));
    }

    #[test]
    fn validation() {
        assert!(is_valid("s_0123456789ab"));
        assert!(!is_valid("x_0123456789ab"));
        assert!(!is_valid("s_0123456789a"));
        assert!(!is_valid("s_0123456789a-"));
    }
}
