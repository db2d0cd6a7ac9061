//! One reader of a request's last event id: the `Last-Event-ID` header, else the
//! `lastEventId` query parameter. The hub reads it so when it is served without the
//! layer, as the layer, the axum extractors and the warp filter do.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::timeout;
use tower_sse::{Event, Hub, LastEventId};

/// The data of the events a subscription made from `request` has ready (replay), up to
/// the first wait.
async fn replayed(hub: &Hub, request: http::Request<()>) -> Vec<String> {
    let mut subscription = hub.subscribe_request(&request).expect("subscribed");
    let mut data = Vec::new();
    while let Ok(Some(item)) = timeout(Duration::from_millis(50), subscription.next()).await {
        let frame = item.expect("an event").into_bytes();
        let text = String::from_utf8(frame.to_vec()).unwrap();
        let line = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        data.push(line.to_owned());
    }
    data
}

#[tokio::test]
async fn a_hub_without_the_layer_resumes_from_the_header_or_the_query_parameter() {
    let hub = Hub::new();
    let ids: Vec<u64> = (1..=3)
        .map(|n| {
            hub.publish("a", Event::data(&n.to_string()))
                .unwrap()
                .id()
                .unwrap()
        })
        .collect();
    let get = |uri: &str| http::Request::get(uri);

    let by_query = get(&format!(
        "/?topic=a&{}={}",
        LastEventId::QUERY_PARAM,
        ids[0]
    ));
    assert_eq!(replayed(&hub, by_query.body(()).unwrap()).await, ["2", "3"]);

    let by_header = get("/?topic=a").header(LastEventId::HEADER, ids[1].to_string());
    assert_eq!(replayed(&hub, by_header.body(()).unwrap()).await, ["3"]);

    // The header wins over the query, as in the layer.
    let both = get(&format!("/?topic=a&lastEventId={}", ids[0]))
        .header(LastEventId::HEADER, ids[1].to_string());
    assert_eq!(replayed(&hub, both.body(()).unwrap()).await, ["3"]);

    // What the layer put in the extensions wins over both.
    let mut layered = get(&format!("/?topic=a&lastEventId={}", ids[0]))
        .header(LastEventId::HEADER, ids[0].to_string())
        .body(())
        .unwrap();
    layered
        .extensions_mut()
        .insert(LastEventId::new(ids[1].to_string()));
    assert_eq!(replayed(&hub, layered).await, ["3"]);

    // The head alone, as the axum extractor hands it over, reads the same.
    let (parts, ()) = get(&format!("/?topic=a&lastEventId={}", ids[1]))
        .body(())
        .unwrap()
        .into_parts();
    let subscription = hub.subscribe_parts(&parts).unwrap();
    let frames: Vec<_> = timeout(
        Duration::from_secs(10),
        subscription
            .take(1)
            .map(|item| item.unwrap().into_bytes())
            .collect(),
    )
    .await
    .expect("the replayed event within 10 s");
    let expected = format!("data: 3\nid: {}\n\n", ids[2]);
    assert_eq!(frames, [expected.as_bytes()]);
}
