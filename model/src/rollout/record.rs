//! Writing a rollout's outcome back into its policy file, so that git stays the truth: the
//! file is edited as a person would (one line added), keeping its comments and layout.
//!
//! `status: completed` makes the canary the service's stable version: every share the Route
//! gives the old stable and the canary goes to the canary. The next rollout names the new
//! stable and canary and drops the status.

use crate::config::RolloutOutcome;
use crate::parse::SourceFile;

/// The edited file (path and new text) recording `outcome` for rollout `name`.
pub fn record_outcome(files: &[SourceFile], name: &str, outcome: RolloutOutcome) -> Result<(String, String), String> {
    let policy = crate::parse(files).map_err(|e| format!("the policy does not parse: {}", e[0]))?;
    let rollout = policy
        .rollouts
        .iter()
        .find(|r| r.value.name.value == name)
        .ok_or_else(|| format!("no Rollout named {name} in the repository"))?;
    if let Some(status) = rollout.value.status {
        return Err(format!("Rollout {name} already records status {status:?}"));
    }
    let file = files.iter().find(|f| f.path == rollout.file).ok_or("the Rollout's file vanished")?;
    let mut lines: Vec<String> = file.text.lines().map(str::to_string).collect();
    // The end of the Rollout's document: the next `---` marker, or the end of the file,
    // before any blank lines that separate it from what follows.
    let first = rollout.line_offset as usize;
    let mut end = (first..lines.len()).find(|&i| is_marker(&lines[i]) && i > first).unwrap_or(lines.len());
    while end > first && lines[end - 1].trim().is_empty() {
        end -= 1;
    }
    let word = match outcome {
        RolloutOutcome::Completed => "completed",
        RolloutOutcome::Aborted => "aborted",
    };
    lines.insert(end, format!("status: {word}"));
    Ok((file.path.clone(), lines.join("\n") + "\n"))
}

fn is_marker(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line == "..."
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: &str = "kind: Service\nname: shop\nversions: [v1, v2]\n";
    const ROLLOUT: &str = "# the shop canary\nkind: Rollout\nname: shop-v2\nservice: shop\nstable: \"v1\"   # today\ncanary: v2\nsteps: [{ weight: 50 }]\nanalysis: { interval: 30s, successRate: 99, p99: 500ms, minRequests: 20 }\n\n---\nkind: Service\nname: other\nversions: [v1]\n";

    fn files() -> Vec<SourceFile> {
        vec![
            SourceFile { path: "services.yaml".into(), text: SERVICE.into() },
            SourceFile { path: "rollouts.yaml".into(), text: ROLLOUT.into() },
        ]
    }

    fn recorded(outcome: RolloutOutcome) -> (Vec<SourceFile>, crate::MeshConfig) {
        let (path, text) = record_outcome(&files(), "shop-v2", outcome).unwrap();
        assert_eq!(path, "rollouts.yaml");
        let mut after = files();
        after[1].text = text;
        let config = crate::load(&after, "r").unwrap_or_else(|e| panic!("{e:?}\n{}", after[1].text));
        (after, config)
    }

    #[test]
    fn the_outcome_is_one_added_line_inside_the_rollouts_document() {
        let (after, config) = recorded(RolloutOutcome::Completed);
        let text = &after[1].text;
        assert_eq!(text.replace("status: completed\n", ""), ROLLOUT, "comments and layout stay");
        assert!(text.contains("minRequests: 20 }\nstatus: completed\n\n---\n"), "{text}");
        assert_eq!(config.rollouts["shop-v2"].status, Some(RolloutOutcome::Completed));
        assert!(config.services.contains_key("other"));
    }

    #[test]
    fn an_abort_only_marks_the_rollout() {
        let (after, config) = recorded(RolloutOutcome::Aborted);
        assert_eq!(after[1].text.replace("status: aborted\n", ""), ROLLOUT);
        assert_eq!(config.rollouts["shop-v2"].status, Some(RolloutOutcome::Aborted));
    }

    #[test]
    fn an_unknown_or_finished_rollout_is_refused() {
        assert!(
            record_outcome(&files(), "nope", RolloutOutcome::Aborted).unwrap_err().contains("no Rollout named nope")
        );
        let (after, _) = recorded(RolloutOutcome::Aborted);
        let err = record_outcome(&after, "shop-v2", RolloutOutcome::Completed).unwrap_err();
        assert!(err.contains("already records"), "{err}");
    }
}
