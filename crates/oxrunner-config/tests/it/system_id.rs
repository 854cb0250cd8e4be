use std::os::unix::fs::PermissionsExt;

use oxrunner_config::system_id::{FILE_NAME, is_valid, load_or_create};

#[test]
fn created_once_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let config_dir = dir.path().join("gitlab-runner");
    let first = load_or_create(&config_dir).unwrap();
    assert!(is_valid(&first), "{first}");
    let file = config_dir.join(FILE_NAME);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), first);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(load_or_create(&config_dir).unwrap(), first);
}

#[test]
fn existing_id_is_kept_and_garbage_replaced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), "r_AbCdEf123456\n").unwrap();
    assert_eq!(load_or_create(dir.path()).unwrap(), "r_AbCdEf123456");

    std::fs::write(dir.path().join(FILE_NAME), "not-an-id").unwrap();
    let replaced = load_or_create(dir.path()).unwrap();
    assert!(is_valid(&replaced));
    assert_eq!(
        std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
        replaced
    );
}
