//! Holds the control plane's modules to the layers `src/lib.rs` draws: a module imports its
//! own layer or lower ones, never a higher one, and no modules import each other in a circle.
//! Imports are read as `../shared/tools/module-cycles` reads them: `crate::x` paths outside
//! test modules.

mod support {
    pub mod imports;
}

use std::collections::BTreeMap;
use std::path::Path;
use support::imports::{circles, imports};

/// Lowest first, as `src/lib.rs` draws them. A new module must be placed here.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation",
        &[
            "auth",
            "https",
            "identity",
            "inject",
            "prometheus",
            "secrets",
            "source",
            "store",
            "sync",
            "telemetry",
            "testing",
            "webhook",
        ],
    ),
    ("services", &["audit", "cluster", "config", "fleet", "gitops", "rollouts"]),
    ("state", &["state"]),
    ("workers", &["notify"]),
    ("http", &["api", "dashboard", "fleet_api", "health"]),
    ("wiring", &["serve"]),
    ("commands", &["cli", "demo"]),
];

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
    // Within a layer too, no circle.
    wrong.extend(circles(&deps).into_iter().map(|c| format!("these import each other in a circle: {c:?}")));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
