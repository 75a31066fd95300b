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
        let sources = settings.jwt.len() + settings.introspection.len();
        assert!(sources > 0, "{} configures an issuer or an introspection endpoint", file.display());
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

#[test]
fn every_cookbook_entry_loads_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cookbook.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let blocks: Vec<&str> = text.split("```yaml\n").skip(1).map(|b| b.split("```").next().unwrap()).collect();
    assert!(blocks.len() >= 7, "Keycloak, Dex, Okta, Entra ID, Google, GitLab and the flag migration");
    for block in blocks {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, block.as_bytes()).unwrap();
        let settings = Settings::load(f.path()).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(settings.jwt.len(), 1, "{block}");
    }
}
