//! Fuzzing the two parsers users feed text to — Pod manifests and scenarios — with proptest:
//! random text, and random mutations of a corpus (`tests/fuzz-corpus/`, plus the example pods and
//! scenarios). Neither parser may panic, and every error names the file and says something.
//!
//! `cargo test` runs a short round (256 cases each); `PROPTEST_CASES=100000 cargo test -p wasmlet
//! --test e2e fuzz::` runs a long one. A failing case proptest finds is saved in
//! `tests/e2e/fuzz.proptest-regressions` (commit it) and replayed first from then on.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_yaml_ng::Value;
use wasmlet::PodSpec;
use wasmlet::testing::Scenario;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The YAML files under `dir`, recursively.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The corpus of one parser: (directory the document lives in, the document), read once.
fn corpus(kind: &str) -> &'static [(PathBuf, Value)] {
    static MANIFESTS: OnceLock<Vec<(PathBuf, Value)>> = OnceLock::new();
    static SCENARIOS: OnceLock<Vec<(PathBuf, Value)>> = OnceLock::new();
    let (cell, examples) = match kind {
        "manifests" => (&MANIFESTS, workspace().join("examples/pods")),
        _ => (&SCENARIOS, workspace().join("examples/scenarios")),
    };
    cell.get_or_init(|| {
        let mut files = yaml_files(&workspace().join("tests/fuzz-corpus").join(kind));
        files.extend(yaml_files(&examples));
        files
            .into_iter()
            .filter_map(|file| {
                let text = std::fs::read_to_string(&file).ok()?;
                let document = serde_yaml_ng::from_str(&text).ok()?;
                Some((file.parent()?.to_path_buf(), document))
            })
            .collect()
    })
}

/// A document of `kind`'s corpus (picked by `seed`) with `mutations` applied, as text, and the
/// directory it is read from.
fn mutated(
    kind: &str,
    seed: prop::sample::Index,
    mutations: &[(usize, Mutation)],
) -> (&'static Path, String) {
    let corpus = corpus(kind);
    let (dir, document) = &corpus[seed.index(corpus.len())];
    let mut document = document.clone();
    for (target, mutation) in mutations {
        apply(&mut document, *target, mutation);
    }
    (dir, serde_yaml_ng::to_string(&document).unwrap())
}

/// Field names of both formats, so that random keys often hit real fields.
const KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "name",
    "namespace",
    "uid",
    "labels",
    "spec",
    "containers",
    "initContainers",
    "image",
    "command",
    "args",
    "env",
    "value",
    "valueFrom",
    "fieldRef",
    "fieldPath",
    "workingDir",
    "lifecycle",
    "postStart",
    "preStop",
    "exec",
    "sleep",
    "seconds",
    "httpGet",
    "tcpSocket",
    "host",
    "port",
    "path",
    "scheme",
    "httpHeaders",
    "ports",
    "containerPort",
    "protocol",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "successThreshold",
    "initialDelaySeconds",
    "terminationGracePeriodSeconds",
    "restartPolicy",
    "resources",
    "limits",
    "requests",
    "memory",
    "volumes",
    "emptyDir",
    "hostPath",
    "type",
    "volumeMounts",
    "mountPath",
    "readOnly",
    "subPath",
    "pod",
    "seed",
    "cpu",
    "nanosPerFuel",
    "timeSlice",
    "steps",
    "wait",
    "expect",
    "advance",
    "delete",
    "note",
    "gracePeriod",
    "phase",
    "container",
    "state",
    "exitCode",
    "reason",
    "ready",
    "restartCount",
    "event",
    "message",
    "count",
    "log",
    "within",
    "by",
    "notBefore",
    "absent",
    "colour",
];

/// Scalars at the edges of what the fields accept.
const STRINGS: &[&str] = &[
    "",
    "Always",
    "Never",
    "OnFailure",
    "Running",
    "Terminated",
    "Waiting",
    "Succeeded",
    "TCP",
    "UDP",
    "HTTP",
    "HTTPS",
    "sh",
    "/bin/sh",
    "../../../target/components/hello.wasm",
    "missing.wasm",
    "64Mi",
    "1e12",
    "-1",
    "0",
    "1.5Ki",
    "lots",
    "9223372036854775807",
    "1s",
    "500us",
    "-5s",
    "100000000000000000000s",
    "$(PORT)",
    "$$",
    "..",
    "/",
    "a\u{0}b",
    "ü",
    "http",
    "metadata.name",
    "spec.nodeName",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(65536),
            Just(i64::MAX),
            Just(i64::MIN)
        ]
        .prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        prop::sample::select(STRINGS).prop_map(|s| Value::String(s.to_string())),
        "[a-zA-Z0-9 ./:_$()-]{0,12}".prop_map(Value::String),
    ]
}

/// A random YAML value, a few levels deep, with mostly real field names.
fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..4).prop_map(|pairs| {
                Value::Mapping(
                    pairs
                        .into_iter()
                        .map(|(key, value)| (Value::String(key.to_string()), value))
                        .collect(),
                )
            }),
        ]
    })
}

/// One change at one node of a document.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the node.
    Replace(Value),
    /// Remove an entry of the node (a mapping key, or a list item).
    Remove,
    /// Add an entry to the node.
    Insert(&'static str, Value),
}

fn mutation() -> impl Strategy<Value = (usize, Mutation)> {
    let change = prop_oneof![
        value().prop_map(Mutation::Replace),
        Just(Mutation::Remove),
        (prop::sample::select(KEYS), value()).prop_map(|(key, value)| Mutation::Insert(key, value)),
    ];
    (any::<usize>(), change)
}

/// Applies `mutation` at the `target`-th node (in document order, modulo the node count).
fn apply(document: &mut Value, target: usize, mutation: &Mutation) {
    let nodes = count(document);
    let mut index = target % nodes.max(1);
    visit(document, &mut index, mutation);
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Sequence(items) => items.iter().map(count).sum(),
        Value::Mapping(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// Walks to the node `*index` counts down to; returns true once it was changed.
fn visit(value: &mut Value, index: &mut usize, mutation: &Mutation) -> bool {
    if *index == 0 {
        match mutation {
            Mutation::Replace(new) => *value = new.clone(),
            Mutation::Remove => match value {
                Value::Mapping(map) => {
                    if let Some(key) = map.keys().next().cloned() {
                        map.remove(&key);
                    }
                }
                Value::Sequence(items) => {
                    items.pop();
                }
                _ => *value = Value::Null,
            },
            Mutation::Insert(key, new) => match value {
                Value::Mapping(map) => {
                    map.insert(Value::String(key.to_string()), new.clone());
                }
                Value::Sequence(items) => items.push(new.clone()),
                _ => *value = new.clone(),
            },
        }
        return true;
    }
    *index -= 1;
    match value {
        Value::Sequence(items) => items.iter_mut().any(|item| visit(item, index, mutation)),
        Value::Mapping(map) => map.values_mut().any(|item| visit(item, index, mutation)),
        _ => false,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "../tests/e2e/fuzz.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Parses a manifest; an error must name the file and say what is wrong.
fn check_manifest(text: &str, base: &Path) -> Result<(), TestCaseError> {
    if let Err(error) = PodSpec::from_yaml(text, base, "fuzz.yaml") {
        prop_assert_eq!(&error.file, "fuzz.yaml");
        prop_assert!(!error.problems.is_empty());
        for problem in &error.problems {
            prop_assert!(!problem.message.is_empty(), "{error}");
        }
    }
    Ok(())
}

fn check_scenario(text: &str, dir: &Path) -> Result<(), TestCaseError> {
    let path = dir.join("fuzz.yaml");
    if let Err(error) = Scenario::from_yaml(text, &path) {
        prop_assert_eq!(&error.file, &path.display().to_string());
        prop_assert!(!error.message.is_empty());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_manifests_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let (dir, text) = mutated("manifests", seed, &mutations);
        check_manifest(&text, dir)?;
    }

    #[test]
    fn random_text_is_never_a_panic_as_a_manifest(text in "\\PC{0,300}") {
        check_manifest(&text, &workspace().join("examples/pods"))?;
    }

    #[test]
    fn mutated_scenarios_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let (dir, text) = mutated("scenarios", seed, &mutations);
        check_scenario(&text, dir)?;
    }

    #[test]
    fn random_text_is_never_a_panic_as_a_scenario(text in "\\PC{0,300}") {
        check_scenario(&text, &workspace().join("examples/scenarios"))?;
    }
}

#[test]
fn the_corpus_seeds_are_valid() {
    for (dir, document) in corpus("manifests") {
        let text = serde_yaml_ng::to_string(document).unwrap();
        PodSpec::from_yaml(&text, dir, "seed.yaml").unwrap_or_else(|e| panic!("{e}"));
    }
    for file in yaml_files(&workspace().join("tests/fuzz-corpus/scenarios")) {
        Scenario::from_file(&file).unwrap_or_else(|e| panic!("{e:?}"));
    }
}
