//! Holds the control plane's modules to the layers `src/lib.rs` draws: a module imports its
//! own layer or lower ones, never a higher one, and no modules import each other in a circle.
//! Imports are read as `../shared/tools/module-cycles` reads them: `crate::x` paths outside
//! test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first, as `src/lib.rs` draws them. A new module must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundation", &["auth", "identity", "source", "store", "telemetry", "testing", "webhook"]),
    ("services", &["audit", "config", "fleet", "gitops", "rollouts"]),
    ("state", &["state"]),
    ("http", &["api", "dashboard", "fleet_api", "health"]),
    ("wiring", &["serve"]),
    ("commands", &["cli", "demo"]),
];

/// Every top-level module of `src` and the top-level modules it imports.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut tops = BTreeSet::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) && stem != "lib" && stem != "main" {
            tops.insert(stem);
        }
    }
    let mut deps = BTreeMap::new();
    for top in &tops {
        let mut files = vec![src.join(format!("{top}.rs"))];
        let mut dirs = vec![src.join(top)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    dirs.push(path);
                } else if name.ends_with(".rs") && !name.starts_with("tests") {
                    files.push(path);
                }
            }
        }
        let mut used = BTreeSet::new();
        for file in files.iter().filter(|f| f.exists()) {
            let text = std::fs::read_to_string(file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + 7..];
                if let Some(group) = rest.strip_prefix('{') {
                    let names = &group[..group.find('}').unwrap_or(0)];
                    used.extend(names.split([',', ' ', '\n']).map(|n| n.split("::").next().unwrap_or("").to_string()));
                } else {
                    used.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
                }
            }
        }
        used.retain(|m| tops.contains(m) && m != top);
        deps.insert(top.clone(), used);
    }
    deps
}

#[test]
fn modules_depend_one_way_down_the_layers() {
    let deps = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let layer_of: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, (_, mods))| mods.iter().map(move |m| (*m, i))).collect();
    let mut wrong = Vec::new();
    for (module, used) in &deps {
        let Some(&mine) = layer_of.get(module.as_str()) else {
            wrong.push(format!("{module} is in no layer: place it in LAYERS and in src/lib.rs's picture"));
            continue;
        };
        for dep in used {
            if layer_of.get(dep.as_str()).is_some_and(|&theirs| theirs > mine) {
                wrong.push(format!(
                    "{module} ({}) imports {dep} ({})",
                    LAYERS[mine].0,
                    LAYERS[layer_of[dep.as_str()]].0
                ));
            }
        }
    }
    // Within a layer too, no circle: walk from each module and never come back to it.
    for start in deps.keys() {
        let (mut stack, mut seen) = (vec![start.clone()], BTreeSet::new());
        while let Some(m) = stack.pop() {
            for dep in &deps[&m] {
                if dep == start {
                    wrong.push(format!("{start} imports itself through {m}"));
                } else if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
