use super::*;

fn injector() -> Injector {
    Injector {
        image: "ghcr.io/trellis-mesh/trellis-proxy:1.0.0".into(),
        control_plane: "http://trellis.trellis.svc:8080".into(),
        join_tokens: "trellis-join-tokens".into(),
    }
}

fn pod(annotations: Value, env: Option<Value>) -> Value {
    let mut container = json!({ "name": "app", "image": "shop/inventory:2.0", "ports": [{ "containerPort": 9000 }] });
    if let Some(env) = env {
        container["env"] = env;
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "inventory-v2-7d4b9c-",
            "namespace": "shop",
            "labels": { "app.kubernetes.io/name": "inventory", "app.kubernetes.io/version": "v2" },
            "annotations": annotations,
        },
        "spec": { "containers": [container] },
    })
}

/// The review's answer, and the pod with its patch applied (as the API server applies it).
fn answer(pod: &Value, scope: Scope) -> (Value, Value) {
    let body = serde_json::to_vec(&crate::testing::admission_review(pod)).unwrap();
    let answer = review(&body, scope, &injector());
    let mut patched = pod.clone();
    if let Some(patch) = crate::testing::admission_patch(&answer["response"]) {
        json_patch::patch(&mut patched, &serde_json::from_value::<json_patch::Patch>(patch).unwrap()).unwrap();
    }
    (answer["response"].clone(), patched)
}

fn env_of(container: &Value, name: &str) -> Value {
    container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).cloned().unwrap_or(Value::Null)
}

#[test]
fn an_annotated_pod_gets_the_proxy_and_its_applications_the_proxy_address() {
    let original = pod(json!({ "trellis.io/inject": "enabled" }), None);
    let (response, patched) = answer(&original, Scope::Pod);
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!((response["allowed"].clone(), response["patchType"].clone()), (json!(true), json!("JSONPatch")));
    let containers = patched["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let (app, proxy) = (&containers[0], &containers[1]);
    assert_eq!(proxy["name"], CONTAINER);
    assert_eq!(proxy["image"], "ghcr.io/trellis-mesh/trellis-proxy:1.0.0");
    assert_eq!(env_of(proxy, "TRELLIS_SERVICE")["value"], "inventory");
    assert_eq!(env_of(proxy, "TRELLIS_VERSION")["value"], "v2");
    assert_eq!(env_of(proxy, "TRELLIS_APP_ADDR")["value"], "127.0.0.1:9000", "the application's declared port");
    assert_eq!(
        env_of(proxy, "TRELLIS_JOIN_TOKEN")["valueFrom"]["secretKeyRef"],
        json!({ "name": "trellis-join-tokens", "key": "inventory" })
    );
    assert_eq!(proxy["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(proxy["securityContext"]["runAsNonRoot"], true);
    assert_eq!(env_of(app, "HTTP_PROXY")["value"], "http://127.0.0.1:4140");
    assert_eq!(patched["metadata"]["annotations"]["trellis.io/proxy-version"], env!("CARGO_PKG_VERSION"));
    assert!(response.get("warnings").is_none());

    // Injecting twice changes nothing: the second answer has no patch.
    let (again, unchanged) = answer(&patched, Scope::Pod);
    assert_eq!(again["allowed"], true);
    assert!(again.get("patch").is_none(), "{again}");
    assert_eq!(unchanged, patched);
}

#[test]
fn a_namespace_that_asks_injects_every_pod_but_one_that_opts_out() {
    let plain = pod(json!({}), None);
    let (response, patched) = answer(&plain, Scope::Namespace);
    assert!(response["patch"].is_string());
    assert_eq!(patched["spec"]["containers"].as_array().unwrap().len(), 2);
    let (response, _) = answer(&plain, Scope::Pod);
    assert!(response.get("patch").is_none() && response["allowed"] == true, "not asked: {response}");
    let out = pod(json!({ "trellis.io/inject": "disabled" }), None);
    let (response, unchanged) = answer(&out, Scope::Namespace);
    assert!(response.get("patch").is_none() && response["allowed"] == true);
    assert_eq!(unchanged, out);
}

#[test]
fn the_patch_is_minimal_and_keeps_what_the_pod_says() {
    // An HTTP_PROXY of the application's own stays; only NO_PROXY is added, at the end.
    let mut original = pod(
        json!({ "trellis.io/inject": "enabled", "trellis.io/app-port": "7000" }),
        Some(json!([{ "name": "HTTP_PROXY", "value": "http://corp:3128" }])),
    );
    original["metadata"]["labels"] = json!({ "app": "inventory" });
    let (response, patched) = answer(&original, Scope::Pod);
    let app = &patched["spec"]["containers"][0];
    assert_eq!(env_of(app, "HTTP_PROXY")["value"], "http://corp:3128");
    assert_eq!(env_of(app, "NO_PROXY")["value"], "127.0.0.1,localhost");
    let proxy = &patched["spec"]["containers"][1];
    assert_eq!(env_of(proxy, "TRELLIS_APP_ADDR")["value"], "127.0.0.1:7000");
    assert_eq!(env_of(proxy, "TRELLIS_VERSION")["value"], "v1");
    assert_eq!(response["warnings"][0], "the pod names no version (label app.kubernetes.io/version): v1 is assumed");
    let ops: Vec<Value> = serde_json::from_value(crate::testing::admission_patch(&response).unwrap()).unwrap();
    let paths: Vec<&str> = ops.iter().map(|o| o["path"].as_str().unwrap()).collect();
    assert_eq!(
        paths,
        ["/spec/containers/0/env/-", "/spec/containers/-", "/metadata/annotations/trellis.io~1proxy-version"]
    );
    assert!(ops.iter().all(|o| o["op"] == "add"), "adds only: nothing of the pod is replaced");
}

#[test]
fn a_malformed_review_or_pod_is_refused_with_a_reason_never_an_error() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), "not an admission.k8s.io/v1 AdmissionReview"),
        (
            serde_json::to_vec(&json!({ "apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview" }))
                .unwrap(),
            "admissionReviewVersions [v1]",
        ),
        (
            serde_json::to_vec(
                &json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {} }),
            )
            .unwrap(),
            "no request uid",
        ),
        (
            serde_json::to_vec(&crate::testing::admission_review(&json!({ "kind": "Service", "spec": {} }))).unwrap(),
            "not a Pod",
        ),
        (
            serde_json::to_vec(&crate::testing::admission_review(&pod(json!({ "trellis.io/inject": "yes" }), None)))
                .unwrap(),
            "\"yes\" is neither enabled nor disabled",
        ),
        (
            serde_json::to_vec(&crate::testing::admission_review(&pod(
                json!({ "trellis.io/inject": "enabled", "trellis.io/app-port": "http" }),
                None,
            )))
            .unwrap(),
            "is not a port",
        ),
    ];
    for (body, why) in cases {
        let answer = review(&body, Scope::Pod, &injector());
        assert_eq!(
            (answer["apiVersion"].as_str(), answer["kind"].as_str()),
            (Some("admission.k8s.io/v1"), Some("AdmissionReview"))
        );
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains(why), "{message} should say {why}");
    }
    let asked =
        serde_json::to_vec(&crate::testing::admission_review(&pod(json!({ "trellis.io/inject": "enabled" }), None)))
            .unwrap();
    let answer = review(&asked, Scope::parse("pods"), &injector());
    assert!(answer["response"]["status"]["message"].as_str().unwrap().contains("names no scope"), "{answer}");
    let mut nameless = pod(json!({ "trellis.io/inject": "enabled" }), None);
    nameless["metadata"]["labels"] = json!({});
    let answer =
        review(&serde_json::to_vec(&crate::testing::admission_review(&nameless)).unwrap(), Scope::Pod, &injector());
    assert!(answer["response"]["status"]["message"].as_str().unwrap().contains("label it app.kubernetes.io/name"));
}

#[test]
fn every_setting_the_injector_gives_is_one_the_proxy_reads() {
    let (_, patched) = answer(&pod(json!({ "trellis.io/inject": "enabled" }), None), Scope::Pod);
    let names: Vec<String> = patched["spec"]["containers"][1]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    let read: Vec<&str> = trellis_proxy::env::SETTINGS.iter().map(|(name, ..)| *name).collect();
    for name in &names {
        assert!(read.contains(&name.as_str()), "{name} is not in trellis-proxy --help");
    }
    assert!(names.len() >= 10, "{names:?}");
}
