//! The imports among a crate's top-level modules, read as `../shared/tools/module-cycles` reads
//! them: `crate::x` paths outside test modules. Shared by the server's and the proxy's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module of `src` and the top-level modules it imports.
pub fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
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

/// The circles among modules: each group of more than one module that reach each other.
pub fn circles(deps: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let reach = |from: &String| {
        let (mut stack, mut seen) = (vec![from.clone()], BTreeSet::new());
        while let Some(m) = stack.pop() {
            for dep in &deps[&m] {
                if seen.insert(dep.clone()) {
                    stack.push(dep.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = deps.keys().map(|m| (m, reach(m))).collect();
    let mut groups: Vec<BTreeSet<String>> = Vec::new();
    for m in deps.keys() {
        let group: BTreeSet<String> = reaches[m].iter().filter(|other| reaches[*other].contains(m)).cloned().collect();
        if group.len() > 1 && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}
