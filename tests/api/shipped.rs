//! The configuration files in the repository are the ones users copy: they must load.

use std::path::Path;

use tokenreview_gateway::config::Settings;

#[test]
fn the_reference_config_and_every_example_load_and_validate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = vec![root.join("gateway.yaml")];
    for entry in std::fs::read_dir(root.join("examples")).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() >= 4, "reference config plus Keycloak, Dex and Okta examples");
    for file in files {
        let settings = Settings::load(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(!settings.jwt.is_empty(), "{} configures an issuer", file.display());
    }
}

#[test]
fn the_reference_config_states_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.yaml");
    let documented = Settings::load(&path).unwrap();
    let defaults = Settings::default();
    assert_eq!(format!("{:?}", documented.server), format!("{:?}", defaults.server));
    assert_eq!(format!("{:?}", documented.cache), format!("{:?}", defaults.cache));
    assert_eq!(format!("{:?}", documented.keys), format!("{:?}", defaults.keys));
}
