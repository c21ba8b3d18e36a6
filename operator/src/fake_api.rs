//! A fake API server for reconcile tests without a cluster: a mocked HTTP service behind a real
//! `kube::Client`, which answers each request with what the test's handler says and records
//! every request, so a test asserts what a round wrote, and that a settled round wrote nothing.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the fake API server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    /// The path and query.
    pub uri: String,
    /// The body, as JSON (`Null` when empty or not JSON).
    pub body: Value,
}

impl Received {
    /// `"PATCH /api/v1/namespaces/a/configmaps/c"`: method and path without the query.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.uri.split('?').next().unwrap_or_default())
    }
}

/// What the handler answers.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// A response that never ends (a watch with nothing to say).
    pub open: bool,
}

impl Answer {
    pub fn ok(body: Value) -> Self {
        Answer { status: StatusCode::OK, body, open: false }
    }

    /// A watch that stays open and says nothing.
    pub fn quiet_watch() -> Self {
        Answer { status: StatusCode::OK, body: Value::Null, open: true }
    }

    /// A list of `items` (as a LIST answers, at resourceVersion 1).
    pub fn list(items: Vec<Value>) -> Self {
        Answer::ok(json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}))
    }

    /// A Kubernetes `Status` failure with `code` and `message`.
    pub fn status(code: u16, reason: &str, message: &str) -> Self {
        Answer {
            status: StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}),
            open: false,
        }
    }
}

/// The fake server: what it received so far.
#[derive(Clone, Default)]
pub struct Recorded(Arc<Mutex<Vec<Received>>>);

impl Recorded {
    pub fn all(&self) -> Vec<Received> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every request as [`Received::line`].
    pub fn lines(&self) -> Vec<String> {
        self.all().iter().map(Received::line).collect()
    }
}

/// A client whose requests `handler` answers (on a task of the current runtime), and the
/// record of them.
pub fn serve(handler: impl Fn(&Received) -> Answer + Send + 'static) -> (kube::Client, Recorded) {
    type Answered = BoxBody<Bytes, std::convert::Infallible>;
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Answered>>();
    let recorded = Recorded::default();
    let log = recorded.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let received = Received {
                method: parts.method,
                uri: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let answer = handler(&received);
            if let Ok(mut l) = log.0.lock() {
                l.push(received);
            }
            let body: Answered = if answer.open {
                StreamBody::new(futures::stream::pending::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>())
                    .boxed()
            } else {
                Full::new(Bytes::from(serde_json::to_vec(&answer.body).unwrap_or_default())).boxed()
            };
            let response =
                Response::builder().status(answer.status).header("content-type", "application/json").body(body);
            match response {
                Ok(r) => send.send_response(r),
                Err(e) => panic!("building a fake response: {e}"),
            }
        }
    });
    (kube::Client::new(service, "default"), recorded)
}

/// Answers an apply (PATCH) or create (POST) with the object it was sent, given a
/// `resourceVersion`: what a real API server stores for an object nobody else writes.
pub fn echo(r: &Received, version: &str) -> Answer {
    let mut obj = r.body.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), version.into());
    }
    Answer::ok(obj)
}

/// Whether a request is a watch.
pub fn is_watch(r: &Received) -> bool {
    r.method == Method::GET && r.uri.contains("watch=true")
}

/// Whether a request is a LIST: a watcher's (paged) or a round's (by selector).
pub fn is_list(r: &Received) -> bool {
    // The stores list in pages (`limit`); a round lists by selector. A GET of one object has
    // neither.
    r.method == Method::GET
        && !is_watch(r)
        && ["limit=", "labelSelector=", "fieldSelector="].iter().any(|q| r.uri.contains(q))
}

/// A fake cluster: a LIST (or any GET) of a collection path in `lists` answers its items (any
/// other LIST answers none) and watches stay open and quiet. A write answers the object as
/// stored at version 9 (a PATCH merged into the object written or listed before, a status
/// write with the status sent) and is kept: a GET answers what was written, else what is
/// listed, else not found. A DELETE succeeds.
pub fn cluster(lists: Vec<(&'static str, Vec<Value>)>) -> impl Fn(&Received) -> Answer + Send + 'static {
    let written: Mutex<std::collections::HashMap<String, Value>> = Mutex::default();
    move |r: &Received| {
        let path = r.uri.split('?').next().unwrap_or_default();
        if is_watch(r) {
            return Answer::quiet_watch();
        }
        let collection = lists.iter().find(|(p, _)| *p == path).map(|(_, items)| items.clone());
        if is_list(r) || (r.method == Method::GET && collection.is_some()) {
            return Answer::list(collection.unwrap_or_default());
        }
        let status = path.strip_suffix("/status");
        let object = status.unwrap_or(path).to_string();
        let held = written.lock().ok().and_then(|w| w.get(&object).cloned()).or_else(|| {
            let (collection, name) = object.rsplit_once('/').unwrap_or_default();
            let items = lists.iter().find(|(p, _)| *p == collection).map(|(_, items)| items.as_slice());
            items.unwrap_or_default().iter().find(|i| i["metadata"]["name"].as_str() == Some(name)).cloned()
        });
        let stored = match (&r.method, held) {
            (&Method::GET, Some(obj)) => return Answer::ok(obj),
            (&Method::GET, None) => return Answer::status(404, "NotFound", "not found"),
            (&Method::DELETE, _) => {
                if let Ok(mut w) = written.lock() {
                    w.remove(&object);
                }
                return Answer::ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
            }
            (&Method::PATCH, Some(mut obj)) => {
                match status {
                    Some(_) => obj["status"] = r.body["status"].clone(),
                    None => merge(&mut obj, &r.body),
                }
                obj
            }
            _ => r.body.clone(),
        };
        let mut stored = stored;
        if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), "9".into());
        }
        // A POST names the collection: the object is kept under its own path.
        let at = match (&r.method, stored["metadata"]["name"].as_str()) {
            (&Method::POST, Some(name)) => format!("{object}/{name}"),
            _ => object,
        };
        if let Ok(mut w) = written.lock() {
            w.insert(at, stored.clone());
        }
        Answer::ok(stored)
    }
}

/// `patch` merged into `obj` as a JSON merge patch does (a null removes).
fn merge(obj: &mut Value, patch: &Value) {
    if patch.is_object() && !obj.is_object() {
        *obj = json!({});
    }
    match (obj.as_object_mut(), patch.as_object()) {
        (Some(o), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    o.remove(k);
                } else {
                    merge(o.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *obj = patch.clone(),
    }
}

/// The writes among what was received (no GET, LIST or watch), as [`Received::line`].
pub fn writes(recorded: &Recorded) -> Vec<String> {
    recorded.all().iter().filter(|r| r.method != Method::GET).map(Received::line).collect()
}

/// A controller's context over a fake [`cluster`] of `lists`, and the record of its requests.
pub fn context(lists: Vec<(&'static str, Vec<Value>)>) -> (Arc<crate::context::Context>, Recorded) {
    let (client, recorded) = serve(cluster(lists));
    let metrics = Arc::new(crate::metrics::Metrics::new());
    (crate::context::Context::new(client, "test", metrics, "zhengyun-system"), recorded)
}

/// Waits until `reads` have their first list from the fake cluster (a test fails after 10 s).
pub async fn listed(reads: &[&dyn crate::watch::Ready]) {
    let first = crate::watch::all_ready(reads);
    if tokio::time::timeout(std::time::Duration::from_secs(10), first).await.is_err() {
        panic!("the stores never listed");
    }
}

/// `v` as a typed object (a test fails naming why it does not read).
pub fn object<K: serde::de::DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("a test object that does not read: {e}"))
}
