//! Two revisions' policy files side by side, as a reviewer reads a pull request: the lines
//! that differ paired left and right, three lines of context around them, the rest folded.

use trellis_api::{DiffRow, FileDiff, PolicyFile};

/// Unchanged lines shown on each side of a change.
const CONTEXT: usize = 3;
/// Above this many cells (lines × lines of the part that differs) the longest common
/// subsequence is not searched: the part is shown as removed, then added. Policy files are
/// far smaller; this bounds what a pathological commit costs the control plane (4 MB).
const MAX_CELLS: usize = 1 << 20;

/// Every file that differs between `old` and `new`, by path.
pub fn files(old: &[PolicyFile], new: &[PolicyFile]) -> Vec<FileDiff> {
    let mut paths: Vec<&str> = old.iter().chain(new).map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    let text = |files: &[PolicyFile], path: &str| files.iter().find(|f| f.path == path).map(|f| f.text.clone());
    paths
        .into_iter()
        .filter_map(|path| {
            let (before, after) = (text(old, path), text(new, path));
            let status = match (&before, &after) {
                (Some(a), Some(b)) if a == b => return None,
                (Some(_), Some(_)) => "modified",
                (None, _) => "added",
                (_, None) => "removed",
            };
            let rows = lines(before.as_deref().unwrap_or_default(), after.as_deref().unwrap_or_default());
            Some(FileDiff { path: path.to_string(), status: status.to_string(), rows })
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Same,
    Removed,
    Added,
}

/// The rows of a side-by-side diff of two texts.
pub fn lines(old: &str, new: &str) -> Vec<DiffRow> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let ops = script(&a, &b);
    let mut rows = Vec::with_capacity(ops.len());
    let (mut i, mut j, mut k) = (0, 0, 0);
    let n = |x: usize| x as u32 + 1;
    while k < ops.len() {
        if ops[k] == Op::Same {
            rows.push(DiffRow::Same { old: n(i), new: n(j), text: a[i].to_string() });
            (i, j, k) = (i + 1, j + 1, k + 1);
            continue;
        }
        // A run of removals and additions: pair them line by line as replacements.
        let removed = ops[k..].iter().take_while(|&&o| o == Op::Removed).count();
        let added = ops[k + removed..].iter().take_while(|&&o| o == Op::Added).count();
        for step in 0..removed.max(added) {
            rows.push(match (step < removed, step < added) {
                (true, true) => DiffRow::Changed {
                    old: n(i + step),
                    new: n(j + step),
                    old_text: a[i + step].to_string(),
                    new_text: b[j + step].to_string(),
                },
                (true, false) => DiffRow::Removed { old: n(i + step), text: a[i + step].to_string() },
                _ => DiffRow::Added { new: n(j + step), text: b[j + step].to_string() },
            });
        }
        (i, j, k) = (i + removed, j + added, k + removed + added);
    }
    fold(rows)
}

/// The edit script from `a` to `b`: common prefix and suffix first, then the longest common
/// subsequence of what is left between them.
fn script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops = vec![Op::Same; prefix];
    if (mid_a.len() + 1).saturating_mul(mid_b.len() + 1) > MAX_CELLS {
        ops.extend(std::iter::repeat_n(Op::Removed, mid_a.len()));
        ops.extend(std::iter::repeat_n(Op::Added, mid_b.len()));
    } else {
        ops.extend(lcs(mid_a, mid_b));
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

/// Longest common subsequence by dynamic programming, removals before additions in each run.
fn lcs(a: &[&str], b: &[&str]) -> Vec<Op> {
    let w = b.len() + 1;
    // len[i * w + j]: the LCS of a[i..] and b[j..].
    let mut len = vec![0u32; (a.len() + 1) * w];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            len[i * w + j] =
                if a[i] == b[j] { len[(i + 1) * w + j + 1] + 1 } else { len[(i + 1) * w + j].max(len[i * w + j + 1]) };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::with_capacity(a.len() + b.len()));
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push(Op::Same);
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && len[(i + 1) * w + j] >= len[i * w + j + 1]) {
            ops.push(Op::Removed);
            i += 1;
        } else {
            ops.push(Op::Added);
            j += 1;
        }
    }
    ops
}

/// Folds unchanged lines further than [`CONTEXT`] from any change into gaps.
fn fold(rows: Vec<DiffRow>) -> Vec<DiffRow> {
    let changed: Vec<usize> =
        rows.iter().enumerate().filter(|(_, r)| !matches!(r, DiffRow::Same { .. })).map(|(i, _)| i).collect();
    let near = |i: usize| {
        let at = changed.partition_point(|&c| c + CONTEXT < i);
        changed.get(at).is_some_and(|&c| c <= i + CONTEXT)
    };
    let mut out = Vec::new();
    let mut folded = 0u32;
    for (i, row) in rows.into_iter().enumerate() {
        if near(i) {
            if folded > 0 {
                out.push(DiffRow::Gap { lines: folded });
                folded = 0;
            }
            out.push(row);
        } else {
            folded += 1;
        }
    }
    if folded > 0 {
        out.push(DiffRow::Gap { lines: folded });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> PolicyFile {
        PolicyFile { path: path.into(), text: text.into() }
    }

    fn numbered(n: usize) -> String {
        (1..=n).map(|i| format!("line {i}\n")).collect()
    }

    #[test]
    fn a_changed_line_pairs_with_its_replacement_in_three_lines_of_context() {
        let old = numbered(20);
        let new = old.replace("line 10\n", "line ten\n");
        let rows = lines(&old, &new);
        assert_eq!(rows.first(), Some(&DiffRow::Gap { lines: 6 }));
        assert_eq!(rows.last(), Some(&DiffRow::Gap { lines: 7 }));
        assert_eq!(rows.len(), 9, "gap, 3 context, the change, 3 context, gap: {rows:?}");
        assert_eq!(
            rows[4],
            DiffRow::Changed { old: 10, new: 10, old_text: "line 10".into(), new_text: "line ten".into() }
        );
        assert_eq!(rows[3], DiffRow::Same { old: 9, new: 9, text: "line 9".into() });
    }

    #[test]
    fn insertions_and_removals_keep_both_sides_numbered() {
        let rows = lines("a\nb\nc\n", "a\nx\nb\n");
        assert_eq!(
            rows,
            vec![
                DiffRow::Same { old: 1, new: 1, text: "a".into() },
                DiffRow::Added { new: 2, text: "x".into() },
                DiffRow::Same { old: 2, new: 3, text: "b".into() },
                DiffRow::Removed { old: 3, text: "c".into() },
            ]
        );
        assert_eq!(lines("same\n", "same\n"), vec![DiffRow::Gap { lines: 1 }]);
    }

    #[test]
    fn an_unreasonably_large_difference_is_shown_whole_without_searching() {
        let old: String = (0..2000).map(|i| format!("a{i}\n")).collect();
        let new: String = (0..2000).map(|i| format!("b{i}\n")).collect();
        let rows = lines(&old, &new);
        assert_eq!(rows.len(), 2000);
        assert!(rows.iter().all(|r| matches!(r, DiffRow::Changed { .. })));
    }

    #[test]
    fn only_files_that_differ_are_listed_with_what_happened_to_them() {
        let old = [file("a.yaml", "x\n"), file("b.yaml", "same\n"), file("c.yaml", "gone\n")];
        let new = [file("a.yaml", "y\n"), file("b.yaml", "same\n"), file("d.yaml", "new\n")];
        let got: Vec<(String, String)> = files(&old, &new).into_iter().map(|f| (f.path, f.status)).collect();
        let want = [("a.yaml", "modified"), ("c.yaml", "removed"), ("d.yaml", "added")];
        assert_eq!(got, want.map(|(p, s)| (p.to_string(), s.to_string())));
        let added = &files(&[], &[file("d.yaml", "one\ntwo\n")])[0];
        assert_eq!(added.rows[1], DiffRow::Added { new: 2, text: "two".into() });
    }
}
