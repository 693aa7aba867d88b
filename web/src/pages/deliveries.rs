//! Notification deliveries, under the rollouts on `/rollouts`: which event went to which
//! Notification, whether it arrived, after how many tries, and why not. Rendered by the
//! server as markup, sent with the live rollouts.

/// The newest deliveries as markup.
#[cfg(feature = "ssr")]
pub fn markup(deliveries: &[crate::api::DeliveryView]) -> String {
    use crate::api::format_time;
    use crate::components::escape;
    let mut html = String::from("<h2>Notifications</h2>");
    if deliveries.is_empty() {
        html.push_str(
            r#"<p class="muted" data-testid="deliveries-none">No notification has been sent. Commit a Notification (kind: Notification) to tell a webhook or a Slack channel of rollouts, rejected revisions and NACKs.</p>"#,
        );
        return html;
    }
    html.push_str(
        r#"<table data-testid="deliveries"><thead><tr><th>Queued</th><th>Notification</th><th>Event</th><th>Service</th><th>State</th><th>Tries</th><th>Last error</th></tr></thead><tbody>"#,
    );
    for d in deliveries {
        let state = escape(&d.state);
        html.push_str(&format!(
            r#"<tr data-testid="delivery-{}" title="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><span class="phase {state}">{state}</span></td><td>{}</td><td>{}</td></tr>"#,
            d.id,
            escape(&d.summary),
            format_time(d.created_at),
            escape(&d.notification),
            escape(&d.event),
            escape(d.service.as_deref().unwrap_or("—")),
            d.attempts,
            escape(d.last_error.as_deref().unwrap_or("")),
        ));
    }
    html.push_str("</tbody></table>");
    html
}

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use super::*;
    use crate::api::DeliveryView;

    #[test]
    fn a_delivery_says_what_went_where_and_how_it_went() {
        let d = DeliveryView {
            id: 3,
            notification: "canary-alerts".into(),
            event: "rollout-aborted".into(),
            service: Some("inventory".into()),
            summary: "rollout inventory-v2 aborted: <p99>".into(),
            state: "pending".into(),
            attempts: 2,
            last_error: Some("the receiver answered 503".into()),
            created_at: 0,
            updated_at: 0,
        };
        let html = markup(&[d]);
        assert!(
            html.contains(r#"<tr data-testid="delivery-3" title="rollout inventory-v2 aborted: &lt;p99&gt;">"#),
            "{html}"
        );
        assert!(html.contains(r#"<td>canary-alerts</td><td>rollout-aborted</td><td>inventory</td><td><span class="phase pending">pending</span></td><td>2</td><td>the receiver answered 503</td>"#), "{html}");
        assert!(markup(&[]).contains("No notification has been sent"));
    }
}
