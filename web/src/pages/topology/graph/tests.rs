use super::*;

fn node(service: &str, rps: f64, success: Option<f64>) -> NodeView {
    let golden = Golden { rps, success_rate: success, requests: (rps * 60.0) as u64, ..Default::default() };
    NodeView { service: service.into(), golden: golden.clone(), versions: vec![("v1".into(), golden)], tcp: None }
}

fn edge(from: &str, to: &str, versions: &[(&str, u64)]) -> EdgeView {
    let requests = versions.iter().map(|(_, n)| n).sum::<u64>();
    EdgeView {
        from: from.into(),
        to: to.into(),
        golden: Golden { rps: requests as f64 / 60.0, success_rate: Some(1.0), requests, ..Default::default() },
        denied: 0,
        denied_by: Vec::new(),
        tcp: None,
        versions: versions.iter().map(|(v, n)| (v.to_string(), *n)).collect(),
    }
}

fn mesh() -> TopologyView {
    TopologyView {
        window_s: 60,
        nodes: ["storefront", "catalog", "inventory", "payments"].map(|s| node(s, 2.0, Some(1.0))).to_vec(),
        edges: vec![
            edge("storefront", "catalog", &[("v1", 120)]),
            edge("storefront", "inventory", &[("v1", 90), ("v2", 30)]),
            edge("catalog", "inventory", &[("v1", 60)]),
        ],
    }
}

#[test]
fn callers_sit_left_of_callees_and_a_cycle_still_ends() {
    let slots = layout(&["a", "b", "c", "d"], &[("a", "b"), ("b", "c"), ("a", "c"), ("c", "b"), ("d", "d")]);
    assert_eq!(slots["a"].0, 0);
    assert_ne!(slots["b"].0, slots["c"].0, "the cycle is cut somewhere");
    assert_eq!(slots["d"].0, 0, "a self-call is not a layer");
}

#[test]
fn a_long_layer_wraps_into_columns_and_neighbours_are_ordered_together() {
    // 60 callees of one caller: three columns of 20 after the caller's.
    let callees: Vec<String> = (0..60).map(|i| format!("svc-{i:02}")).collect();
    let mut names: Vec<&str> = vec!["edge"];
    names.extend(callees.iter().map(String::as_str));
    let edges: Vec<(&str, &str)> = callees.iter().map(|c| ("edge", c.as_str())).collect();
    let slots = layout(&names, &edges);
    let columns: BTreeSet<usize> = callees.iter().map(|c| slots[c].0).collect();
    assert_eq!(columns, BTreeSet::from([1, 2, 3]));
    assert!(callees.iter().all(|c| slots[c].1 < ROWS_PER_COLUMN));
    // Two callers with one callee each: each callee sits level with its caller.
    let slots = layout(&["a", "b", "x", "y"], &[("a", "y"), ("b", "x")]);
    assert_eq!((slots["x"].1, slots["y"].1), (slots["b"].1, slots["a"].1));
}

#[test]
fn edges_show_their_version_split_and_the_graph_its_window() {
    let html = markup(&mesh(), &Lens { window: 60, ..Default::default() });
    assert!(html.contains("4 services · 3 edges · figures over the last minute"), "{html}");
    assert!(html.contains(r#"data-testid="edge-storefront-inventory""#));
    assert!(html.contains(r#"data-split="v1 75% · v2 25%""#), "{html}");
    assert!(html.contains(r#"data-split="""#), "one version is no split");
    assert!(html.contains(r#"href="/topology?window=60&amp;focus=inventory""#), "a node focuses on click");
    assert!(!html.contains("node-details"), "no details without a focus");
}

#[test]
fn a_focus_shows_the_service_its_neighbours_and_its_details_only() {
    let lens = Lens { focus: Some("catalog".into()), window: 60, ..Default::default() };
    let html = markup(&mesh(), &lens);
    assert!(html.contains("Focused on <strong>catalog</strong> and its 2 neighbours."), "{html}");
    assert!(html.contains(r#"data-testid="node-storefront""#) && html.contains(r#"data-testid="node-inventory""#));
    assert!(!html.contains(r#"data-testid="node-payments""#), "not a neighbour");
    assert!(html.contains(r#"data-testid="node-details""#) && html.contains("<h4>Called by</h4>"));
    let gone = markup(&mesh(), &Lens { focus: Some("billing".into()), ..lens });
    assert!(gone.contains("No traffic to or from billing in this window."), "{gone}");
}

#[test]
fn a_search_marks_matches_dims_the_rest_and_escapes_what_was_typed() {
    let lens = Lens { query: "INV".into(), window: 60, ..Default::default() };
    let html = markup(&mesh(), &lens);
    assert!(html.contains("1 service match “INV”"), "{html}");
    assert!(html.contains(r#"class="node healthy match""#));
    assert!(html.contains(r#"class="node healthy dim""#));
    let html = markup(&mesh(), &Lens { query: "<script>".into(), ..lens });
    assert!(html.contains("No service matches “&lt;script&gt;”.") && !html.contains("<script>"), "{html}");
}

#[test]
fn at_two_hundred_services_nodes_are_compact_and_edges_unlabelled() {
    let nodes: Vec<NodeView> = (0..200).map(|i| node(&format!("svc-{i:03}"), 1.0, Some(0.999))).collect();
    let edges: Vec<EdgeView> =
        (0..150).map(|i| edge(&format!("svc-{i:03}"), &format!("svc-{:03}", i + 50), &[("v1", 60)])).collect();
    let html = markup(&TopologyView { window_s: 60, nodes, edges }, &Lens { window: 60, ..Default::default() });
    assert_eq!(html.matches(r#"class="node healthy""#).count(), 200);
    assert!(html.contains(r#"height="36""#), "compact nodes");
    assert!(!html.contains(r#"text-anchor="middle">"#), "no edge labels at this size; tooltips carry them");
    assert!(html.contains("<title>svc-000 → svc-050: 1.0 rps · 100.0% ok</title>"), "{}", &html[..2000]);
}
