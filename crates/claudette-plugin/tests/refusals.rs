//! Bad plugins are refused with an error naming the file and the reason, and the host goes on
//! (issue 4 item 4; reliability-spec F-33, F-34, S-13). Every case loads a real `.so` built
//! from `tests/fixture-plugin` or by `cargo xtask plugins`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Ownership, modes and symlinks are Unix notions; the loader skips those checks elsewhere.
#![cfg(unix)]

mod common;

use std::path::Path;
use std::sync::Arc;

use claudette_core::{BackendSettings, ErrorKind, Origin, ProviderFactory, Registry};
use claudette_plugin::{
    ABI_VERSION, LoadOptions, PANIC_CODE, PluginError, RegistryPluginExt, SCHEMA_VERSION, load_dir,
    load_dir_into, load_file, sha256_hex,
};
use common::{fixture, install, is_mapped, plugin_dir, set_mode};

fn named(e: &PluginError, file: &Path) {
    eprintln!("refused as expected: {e}");
    assert_eq!(e.path(), file, "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "the message names the file: {e}");
}

#[test]
fn a_good_fixture_loads_and_describes_itself() {
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libfixture.so");
    let plugin = load_file(&file, &LoadOptions::default()).unwrap();
    assert_eq!(plugin.name(), "fixture");
    assert_eq!(plugin.descriptor().schema_version, SCHEMA_VERSION);
    assert_eq!(plugin.descriptor().plugin_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(plugin.sha256(), sha256_hex(&file).unwrap());
    if cfg!(target_os = "linux") {
        assert!(is_mapped(&file), "a loaded library is mapped (so the not-mapped checks below can fail)");
    }
}

#[test]
fn f33_a_text_file_named_so_is_not_a_library() {
    let dir = plugin_dir();
    let file = dir.path().join("notes.so");
    std::fs::write(&file, "this is not an ELF file\n").unwrap();
    set_mode(&file, 0o600);
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, PluginError::NotALibrary { .. }), "{e}");
    named(&e, &file);
}

#[test]
fn f33_a_library_without_the_root_module_is_refused() {
    let dir = plugin_dir();
    let file = install(&fixture("no-export"), dir.path(), "libplain.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, PluginError::NoRootModule { .. }), "{e}");
    named(&e, &file);
}

#[test]
fn f33_another_plugin_abi_version_is_refused() {
    let dir = plugin_dir();
    let file = install(&fixture("abi-bump"), dir.path(), "libabi.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::AbiVersion { found, expected, .. } => {
            assert_eq!((*found, *expected), (u64::from(ABI_VERSION) + 1, ABI_VERSION));
        }
        other => panic!("expected an ABI version error, got {other}"),
    }
    named(&e, &file);
}

#[test]
fn f33_another_schema_version_is_refused() {
    let dir = plugin_dir();
    let file = install(&fixture("schema-bump"), dir.path(), "libschema.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::SchemaVersion { found, expected, .. } => {
            assert_eq!((*found, *expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected a schema version error, got {other}"),
    }
    named(&e, &file);
}

#[test]
fn f33_a_plugin_of_the_previous_schema_is_refused_by_the_schema_check() {
    // Schema 14 added `ChatRequest::native_flags`: a schema-13 plugin would read every request
    // it is handed one field short. Nothing in the adapter's layout changed, so only this check
    // stands between such a build and the host. (The numbers are spelled out to
    // pin this bump; the next bump updates them.)
    let dir = plugin_dir();
    let file = install(&fixture("schema-previous"), dir.path(), "libprevious.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::SchemaVersion { found, expected, .. } => assert_eq!((*found, *expected), (13, 14)),
        other => panic!("expected a schema version error, got {other}"),
    }
    assert!(e.to_string().contains("schema version 13, this host uses version 14"), "{e}");
    named(&e, &file);
}

#[test]
fn f33_a_root_module_with_another_layout_is_refused_by_the_layout_check() {
    // Built against claudette-plugin with `abi_version: u64`: what a plugin built against a
    // release with another layout looks like. abi_stable's layout check must catch it before
    // the module is used.
    let dir = plugin_dir();
    let file = install(&fixture("layout-change"), dir.path(), "liblayout.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, PluginError::IncompatibleInterface { .. }), "{e}");
    assert!(e.to_string().contains("abi_version") || e.to_string().contains("u64"), "{e}");
    // What differs comes first, before abi_stable's kilobytes of layouts.
    assert!(
        e.to_string().contains("rebuild it against this host's claudette-plugin): mismatched type (expected u32, found u64) in ClaudettePlugin"),
        "{e}"
    );
    named(&e, &file);
}

#[test]
fn a_panicking_descriptor_is_an_error_not_an_abort() {
    let dir = plugin_dir();
    let file = install(&fixture("descriptor-panic"), dir.path(), "libdpanic.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::Panicked { during, message, .. } => {
            assert_eq!(*during, "descriptor");
            assert!(message.contains("fixture descriptor exploded"), "{message}");
        }
        other => panic!("expected a panic error, got {other}"),
    }
    named(&e, &file);
}

fn registry_with_fixture() -> (tempfile::TempDir, Registry) {
    let dir = plugin_dir();
    install(&fixture(""), dir.path(), "libfixture.so");
    let mut registry = Registry::empty();
    let report = registry.load_dir(dir.path(), &LoadOptions::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.loaded, vec!["fixture".to_owned()]);
    (dir, registry)
}

#[test]
fn a_constructor_error_names_the_plugin_and_keeps_its_kind() {
    let (dir, registry) = registry_with_fixture();
    let e = registry.build("fixture", &BackendSettings::new("f").extra("fail_ctor", true)).err().unwrap();
    let text = e.to_string();
    assert!(text.contains("fixture constructor refuses these settings"), "{text}");
    assert!(text.contains(&dir.path().join("libfixture.so").display().to_string()), "{text}");
    // The registry still builds good backends of the same plugin.
    registry.build("fixture", &BackendSettings::new("ok")).unwrap();

    let plugin = load_file(dir.path().join("libfixture.so"), &LoadOptions::default()).unwrap();
    let e = plugin.new_adapter(&BackendSettings::new("f").extra("fail_ctor", true)).unwrap_err();
    match &e {
        PluginError::ConstructorFailed { provider, error, .. } => {
            assert_eq!((provider.as_str(), error.kind), ("fixture", ErrorKind::Config));
        }
        other => panic!("expected a constructor error, got {other}"),
    }
}

#[test]
fn a_constructor_panic_is_contained() {
    let (dir, registry) = registry_with_fixture();
    let e = registry.build("fixture", &BackendSettings::new("f").extra("panic_ctor", true)).err().unwrap();
    let text = e.to_string();
    assert!(text.contains("fixture constructor exploded"), "{text}");
    assert!(text.contains(&dir.path().join("libfixture.so").display().to_string()), "{text}");

    let plugin = load_file(dir.path().join("libfixture.so"), &LoadOptions::default()).unwrap();
    let e = plugin.new_adapter(&BackendSettings::new("f").extra("panic_ctor", true)).unwrap_err();
    assert!(matches!(e, PluginError::ConstructorPanicked { .. }), "{e}");
    // And the host is still here to build another one.
    plugin.new_adapter(&BackendSettings::new("after")).unwrap();
}

#[test]
fn a_duplicate_provider_name_names_both_origins() {
    // Two copies of the same plugin: the second is refused, naming the first. Its bytes are
    // the first's, whose descriptor declared the name already: refused before it is opened.
    let dir = plugin_dir();
    let first = install(&fixture(""), dir.path(), "liba.so");
    let second = install(&fixture(""), dir.path(), "libb.so");
    let mut registry = Registry::empty();
    let report = load_dir_into(&mut registry, dir.path(), &LoadOptions::default());
    assert_eq!(report.loaded, vec!["fixture".to_owned()]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    let e = &report.errors[0];
    match e {
        PluginError::DuplicateName { name, first: origin, identical_to, .. } => {
            assert_eq!(name, "fixture");
            assert_eq!(origin, &Origin::Plugin(first.display().to_string()));
            assert!(identical_to.is_some(), "{e}");
        }
        other => panic!("expected a duplicate, got {other}"),
    }
    named(e, &second);
    let text = e.to_string();
    assert!(text.contains(&first.display().to_string()) && text.contains("`fixture`"), "{text}");
    assert!(text.contains("refused before opening it"), "{text}");
    if cfg!(target_os = "linux") {
        assert!(is_mapped(&first));
        assert!(!is_mapped(&second), "an identical duplicate is refused before dlopen");
    }

    // Against a provider registered in code (a linked crate is the same case).
    let mut registry = Registry::empty();
    let build: fn(&BackendSettings) -> Result<claudette_core::SharedBackend, claudette_core::BackendError> =
        |_| Err(claudette_core::BackendError::config("unused"));
    registry.register(ProviderFactory::new("fixture", "in code", build)).unwrap();
    let e = registry.load_file(&first, &LoadOptions::default()).unwrap_err();
    assert!(matches!(&e, PluginError::DuplicateName { first: Origin::Explicit, .. }), "{e}");
    assert!(e.to_string().contains("registered in code"), "{e}");
    named(&e, &first);
    assert_eq!(registry.providers().count(), 1, "nothing of the plugin was registered");
}

#[test]
fn a_duplicate_only_its_descriptor_reveals_is_refused_before_anything_is_built() {
    // Another build of the same provider (other bytes): the name is known only once the
    // descriptor has run, and it is refused right then, naming the file and the name.
    let dir = plugin_dir();
    let first = install(&fixture(""), dir.path(), "liba.so");
    let other = install(&fixture("other-build"), dir.path(), "libz.so");
    assert_ne!(sha256_hex(&first).unwrap(), sha256_hex(&other).unwrap());
    let mut registry = Registry::empty();
    let report = load_dir_into(&mut registry, dir.path(), &LoadOptions::default());
    assert_eq!(report.loaded, vec!["fixture".to_owned()]);
    match report.errors.as_slice() {
        [e @ PluginError::DuplicateName { name, first: origin, identical_to: None, .. }] => {
            assert_eq!(name, "fixture");
            assert_eq!(origin, &Origin::Plugin(first.display().to_string()));
            named(e, &other);
            assert!(e.to_string().contains("`fixture`"), "{e}");
        }
        other => panic!("expected one duplicate, got {other:?}"),
    }
    assert_eq!(registry.providers().count(), 1);
    // On its own, the other build is a good plugin.
    let mut alone = Registry::empty();
    assert_eq!(alone.load_file(&other, &LoadOptions::default()).unwrap(), "fixture");
    let registered = alone.get("fixture").unwrap();
    assert!(registered.description().contains("another build"), "{}", registered.description());
}

#[test]
fn f34_a_file_not_in_the_allow_list_is_refused_before_it_is_opened() {
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libunlisted.so");
    let options = LoadOptions::default().allow("libother.so", "00");
    let e = load_file(&file, &options).unwrap_err();
    assert!(matches!(e, PluginError::NotAllowListed { .. }), "{e}");
    named(&e, &file);
    assert!(!is_mapped(&file), "refused before dlopen");
}

#[test]
fn f34_a_hash_mismatch_is_refused_before_it_is_opened() {
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libhash.so");
    let wrong = "0".repeat(64);
    let e = load_file(&file, &LoadOptions::default().allow("libhash.so", &wrong)).unwrap_err();
    match &e {
        PluginError::HashMismatch { expected, found, .. } => {
            assert_eq!(expected, &wrong);
            assert_eq!(found, &sha256_hex(&file).unwrap());
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    named(&e, &file);
    assert!(!is_mapped(&file), "refused before dlopen");

    // The right hash (any case) loads.
    let right = sha256_hex(&file).unwrap().to_uppercase();
    load_file(&file, &LoadOptions::default().allow("libhash.so", right)).unwrap();
}

#[test]
fn f34_a_group_or_world_writable_file_is_refused() {
    for mode in [0o720, 0o702] {
        let dir = plugin_dir();
        let file = install(&fixture(""), dir.path(), "libw.so");
        set_mode(&file, mode);
        let e = load_file(&file, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, PluginError::Writable { what: "file", .. }), "{e}");
        named(&e, &file);
        assert!(!is_mapped(&file));
    }
}

#[test]
fn f34_a_group_or_world_writable_directory_is_refused() {
    for mode in [0o770, 0o707] {
        let dir = plugin_dir();
        let file = install(&fixture(""), dir.path(), "libw.so");
        set_mode(dir.path(), mode);
        let (loaded, errors) = load_dir(dir.path(), &LoadOptions::default());
        assert!(loaded.is_empty());
        assert_eq!(errors.len(), 1);
        assert!(matches!(errors[0], PluginError::Writable { what: "plugin directory", .. }), "{}", errors[0]);
        let e = load_file(&file, &LoadOptions::default()).unwrap_err();
        assert!(matches!(e, PluginError::Writable { what: "plugin directory", .. }), "{e}");
        named(&e, &file);
        assert!(!is_mapped(&file));
    }
}

#[test]
fn f34_a_writable_parent_directory_is_refused() {
    let outer = plugin_dir();
    set_mode(outer.path(), 0o777); // world-writable and not sticky: anyone could swap `inner`
    let inner = outer.path().join("plugins");
    std::fs::create_dir(&inner).unwrap();
    set_mode(&inner, 0o700);
    let file = install(&fixture(""), &inner, "libp.so");
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::Writable { what, offender, .. } => {
            assert_eq!(*what, "parent directory");
            assert_eq!(offender, outer.path());
        }
        other => panic!("expected a writable parent, got {other}"),
    }
    named(&e, &file);
    set_mode(outer.path(), 0o700);
}

#[test]
fn f34_symlinks_are_refused() {
    let dir = plugin_dir();
    let elsewhere = plugin_dir();
    let real = install(&fixture(""), elsewhere.path(), "libreal.so");
    let link = dir.path().join("liblink.so");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let e = load_file(&link, &LoadOptions::default()).unwrap_err();
    assert!(matches!(e, PluginError::Symlink { .. }), "{e}");
    named(&e, &link);
    let (loaded, errors) = load_dir(dir.path(), &LoadOptions::default());
    assert!(loaded.is_empty());
    assert!(matches!(errors.as_slice(), [PluginError::Symlink { .. }]), "{errors:?}");
    assert!(!is_mapped(&real));

    // A symlinked plugin directory too.
    let dir_link = dir.path().join("dir-link");
    std::os::unix::fs::symlink(elsewhere.path(), &dir_link).unwrap();
    let (loaded, errors) = load_dir(&dir_link, &LoadOptions::default());
    assert!(loaded.is_empty());
    assert!(matches!(errors.as_slice(), [PluginError::Symlink { .. }]), "{errors:?}");
}

#[test]
fn f34_a_file_owned_by_another_user_is_refused() {
    if !rustix_is_root() {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libnobody.so");
    std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
    let e = load_file(&file, &LoadOptions::default()).unwrap_err();
    match &e {
        PluginError::Owner { owner, what, .. } => assert_eq!((*owner, *what), (65534, "file")),
        other => panic!("expected an owner error, got {other}"),
    }
    named(&e, &file);
    assert!(!is_mapped(&file));
}

fn rustix_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // A file this process creates is owned by its effective user.
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

#[test]
fn f34_copy_to_loads_a_private_copy_and_leaves_nothing_behind() {
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libcopied.so");
    let runtime = plugin_dir();
    let private = runtime.path().join("run");
    let hash = sha256_hex(&file).unwrap();
    let options = LoadOptions::default().allow("libcopied.so", &hash).copy_to(&private);
    let plugin = load_file(&file, &options).unwrap();
    assert_eq!(plugin.sha256(), hash);
    assert_eq!(plugin.path(), file);
    assert!(!is_mapped(&file), "the copy was loaded, not the original");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    assert_eq!(std::fs::read_dir(&private).unwrap().count(), 0, "the copy is removed once mapped");
    // The loaded copy works.
    plugin.new_adapter(&BackendSettings::new("c")).unwrap();

    // A runtime directory others can enter is refused.
    set_mode(&private, 0o755);
    let e = load_file(&file, &options).unwrap_err();
    assert!(matches!(e, PluginError::RuntimeDir { .. }), "{e}");
}

#[test]
fn the_host_keeps_going_past_every_bad_file_in_a_directory() {
    let dir = plugin_dir();
    install(&fixture(""), dir.path(), "lib1good.so");
    std::fs::write(dir.path().join("lib2text.so"), "text").unwrap();
    set_mode(&dir.path().join("lib2text.so"), 0o600);
    install(&fixture("no-export"), dir.path(), "lib3plain.so");
    install(&fixture("abi-bump"), dir.path(), "lib4abi.so");
    install(&fixture("schema-bump"), dir.path(), "lib5schema.so");
    install(&fixture(""), dir.path(), "lib6dup.so");
    std::fs::write(dir.path().join("README.md"), "ignored: not a library extension").unwrap();
    let mut registry = Registry::empty();
    let report = load_dir_into(&mut registry, dir.path(), &LoadOptions::default());
    assert_eq!(report.loaded, vec!["fixture".to_owned()]);
    let mut kinds: Vec<String> = report
        .errors
        .iter()
        .map(|e| {
            let file = e.path().file_name().unwrap().to_string_lossy().into_owned();
            let kind = match e {
                PluginError::NotALibrary { .. } => "not a library",
                PluginError::NoRootModule { .. } => "no root module",
                PluginError::AbiVersion { .. } => "abi",
                PluginError::SchemaVersion { .. } => "schema",
                PluginError::DuplicateName { .. } => "duplicate",
                _ => "other",
            };
            format!("{file}: {kind}")
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "lib2text.so: not a library",
            "lib3plain.so: no root module",
            "lib4abi.so: abi",
            "lib5schema.so: schema",
            "lib6dup.so: duplicate"
        ]
    );
    // The good plugin works after all that.
    registry.build("fixture", &BackendSettings::new("still-here")).unwrap();
}

#[test]
fn loading_nothing_is_the_default() {
    // An empty directory loads nothing and reports nothing; loading only ever happens for a
    // directory or file the host names.
    let dir = plugin_dir();
    let mut registry = Registry::empty();
    let report = load_dir_into(&mut registry, dir.path(), &LoadOptions::default());
    assert!(report.loaded.is_empty() && report.errors.is_empty());
    assert_eq!(registry.providers().count(), 0);
    // A missing directory is one error, not a crash.
    let (loaded, errors) = load_dir(dir.path().join("missing"), &LoadOptions::default());
    assert!(loaded.is_empty());
    assert!(matches!(errors.as_slice(), [PluginError::Io { .. }]), "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_inside_adapter_calls_become_errors() {
    use claudette_core::{Backend, ChatRequest, HttpResponse, ProviderAdapter, StreamParser};
    let dir = plugin_dir();
    let file = install(&fixture(""), dir.path(), "libfixture.so");
    let plugin = load_file(&file, &LoadOptions::default()).unwrap();
    let adapter = plugin.new_adapter(&BackendSettings::new("p")).unwrap();

    let e = adapter.build_request(&ChatRequest::prompt("panic"), false).unwrap_err();
    assert_eq!((e.kind, e.code.as_deref()), (ErrorKind::Internal, Some(PANIC_CODE)));
    assert!(e.message.contains("fixture build_request exploded"), "{e}");

    let e = adapter.classify_error(&HttpResponse { status: 500, headers: &[], body: b"panic" });
    assert_eq!(e.code.as_deref(), Some(PANIC_CODE), "{e}");

    // pricing cannot fail: a panic falls back to the configured prices.
    assert_eq!(adapter.pricing(Some("panic")), adapter.info().pricing);

    // A decoder that panics ends the stream with an error, and stays failed.
    let body = b"{\"text\":\"a\"}\n{\"panic\":true}\n{\"text\":\"b\"}\n{\"end\":true}\n";
    let events = StreamParser::for_adapter(&adapter, &ChatRequest::prompt("x")).parse_all(body, 5);
    assert_eq!(events.len(), 2, "{events:?}");
    match &events[1] {
        claudette_core::StreamEvent::Error { error } => {
            assert!(error.message.contains("fixture decoder exploded"))
        }
        other => panic!("expected an error event, got {other:?}"),
    }

    // Through the whole I/O path: the backend returns the error, the process carries on.
    let backend = plugin.backend(&BackendSettings::new("p").base_url("http://127.0.0.1:9")).unwrap();
    let e = backend.send(&ChatRequest::prompt("panic")).await.unwrap_err();
    assert_eq!(e.code.as_deref(), Some(PANIC_CODE));
    let _keep: Arc<dyn Backend> = backend;
}
