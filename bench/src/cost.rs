//! DynamoDB cost per document operation, against moto: capacity units and items read as
//! DynamoDB reports them (`ReturnConsumedCapacity = TOTAL` on every call, summed by
//! [`storage::DynamoTable::usage`]), and calls by operation as seen on the wire by a loopback
//! proxy between the SDK and moto (its `X-Amz-Target` header), which is what proves there is no
//! Scan.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use storage::{DynamoTable, PageTokens, Usage};
use tenant_context::TenantConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::Opts;
use crate::fixtures::{self, AUDIENCE, Counting, Counts, ISSUER, PAGING_SECRET};
use crate::report::{self, Goal, num};

const SITE: &str = "bench";

/// Finds `X-Amz-Target` header lines in a byte stream that arrives in arbitrary pieces.
#[derive(Default)]
pub struct TargetScanner {
    line: Vec<u8>,
    /// The current line is too long to be a header of interest.
    overflow: bool,
}

impl TargetScanner {
    const MAX_LINE: usize = 256;

    /// Feeds bytes; calls `found` with the operation of every complete
    /// `X-Amz-Target: DynamoDB_20120810.<Operation>` line (the part after the last `.`).
    pub fn feed(&mut self, bytes: &[u8], mut found: impl FnMut(&str)) {
        for &b in bytes {
            if b == b'\n' {
                if !self.overflow {
                    let line = String::from_utf8_lossy(&self.line);
                    let line = line.trim_end_matches('\r');
                    if let Some((name, value)) = line.split_once(':')
                        && name.trim().eq_ignore_ascii_case("x-amz-target")
                    {
                        let v = value.trim();
                        found(v.rsplit('.').next().unwrap_or(v));
                    }
                }
                self.line.clear();
                self.overflow = false;
            } else if !self.overflow {
                self.line.push(b);
                if self.line.len() > Self::MAX_LINE {
                    self.overflow = true;
                    self.line.clear();
                }
            }
        }
    }
}

type Counter = Arc<Mutex<BTreeMap<String, u64>>>;

/// A loopback TCP proxy that counts DynamoDB operations by type.
pub struct Tap {
    addr: SocketAddr,
    counts: Counter,
    total: Counter,
    _tasks: JoinSet<()>,
}

impl Tap {
    /// A proxy to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Tap> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts: Counter = Arc::default();
        let total: Counter = Arc::default();
        let (c, t) = (counts.clone(), total.clone());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (c, t, upstream) = (c.clone(), t.clone(), upstream.clone());
                conns.spawn(async move {
                    let _ = pipe(client, &upstream, c, t).await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(Tap {
            addr,
            counts,
            total,
            _tasks: tasks,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Operations counted since the last call.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Operations counted since the start.
    pub fn total(&self) -> BTreeMap<String, u64> {
        self.total.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn pipe(
    client: TcpStream,
    upstream: &str,
    counts: Counter,
    total: Counter,
) -> std::io::Result<()> {
    let _ = client.set_nodelay(true);
    let server = TcpStream::connect(upstream).await?;
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = async {
        let mut scanner = TargetScanner::default();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return Ok::<_, std::io::Error>(());
            }
            scanner.feed(&buf[..n], |op| {
                for c in [&counts, &total] {
                    *c.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(op.to_owned())
                        .or_default() += 1;
                }
            });
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        tokio::io::copy(&mut sr, &mut cw).await?;
        cw.shutdown().await
    };
    let (a, b) = tokio::join!(up, down);
    a.and(b)
}

/// What one request cost.
struct Cost {
    status: u16,
    body: Value,
    usage: Usage,
    counts: Counts,
    ops: BTreeMap<String, u64>,
}

struct Bench<'a> {
    deps: &'a documents::Deps,
    table: &'a DynamoTable,
    counting: &'a Counting,
    tap: &'a Tap,
    who: Map<String, Value>,
}

impl Bench<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Cost {
        let path = if path.contains('?') {
            format!("{path}&siteId={SITE}")
        } else {
            format!("{path}?siteId={SITE}")
        };
        let req = fixtures::request(fixtures::event(
            method,
            &path,
            body.as_ref(),
            Some(&self.who),
        ));
        self.table.reset_usage();
        self.counting.take();
        self.tap.take();
        let (status, body) = fixtures::read(documents::handle(req, self.deps).await);
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {body}"
        );
        Cost {
            status,
            body,
            usage: self.table.usage(),
            counts: self.counting.take(),
            ops: self.tap.take(),
        }
    }
}

/// Averages of several calls of one operation.
#[derive(Default)]
struct Agg {
    n: u64,
    status: u16,
    read_units: f64,
    write_units: f64,
    model_read_units: f64,
    model_write_units: f64,
    items_read: u64,
    calls: u64,
    returned: u64,
    ops: BTreeMap<String, u64>,
}

impl Agg {
    fn add(&mut self, c: &Cost, returned: Option<usize>) {
        self.n += 1;
        self.status = c.status;
        self.read_units += c.usage.read_units;
        self.write_units += c.usage.write_units;
        self.model_read_units += c.counts.model_read_units;
        self.model_write_units += c.counts.model_write_units;
        self.items_read += c.usage.items_read;
        self.calls += c.usage.calls;
        self.returned += returned.unwrap_or(0) as u64;
        for (k, v) in &c.ops {
            *self.ops.entry(k.clone()).or_default() += v;
        }
    }

    fn per(&self, x: f64) -> f64 {
        x / self.n.max(1) as f64
    }

    fn ops_text(&self) -> String {
        self.ops
            .iter()
            .map(|(k, v)| {
                let avg = self.per(*v as f64);
                if avg.fract() == 0.0 {
                    format!("{k} {avg:.0}")
                } else {
                    format!("{k} {avg:.2}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn read_per_returned(&self) -> Option<f64> {
        (self.returned > 0).then(|| self.items_read as f64 / self.returned as f64)
    }

    fn json(&self) -> Value {
        json!({
            "samples": self.n,
            "status": self.status,
            "read_units_moto": self.per(self.read_units),
            "write_units_moto": self.per(self.write_units),
            "read_units_model": self.per(self.model_read_units),
            "write_units_model": self.per(self.model_write_units),
            "items_read": self.per(self.items_read as f64),
            "items_returned": self.per(self.returned as f64),
            "items_read_per_item_returned": self.read_per_returned(),
            "dynamodb_calls": self.per(self.calls as f64),
            "calls_by_operation": self.ops.iter()
                .map(|(k, v)| (k.clone(), json!(self.per(*v as f64))))
                .collect::<Map<_, _>>(),
        })
    }
}

fn count(body: &Value, field: &str) -> Option<usize> {
    body.get(field).and_then(Value::as_array).map(Vec::len)
}

/// A fresh table (measuring capacity, behind a counting wrapper) and bucket on the shared
/// moto_server, its DynamoDB calls passing through a [`Tap`] that counts them on the wire.
pub async fn tapped_moto() -> (Tap, Arc<DynamoTable>, Arc<Counting>, Arc<storage::S3Blobs>) {
    let moto = integration_tests::moto::shared().await;
    let tap = Tap::start(&moto.endpoint).await.expect("proxy");
    let name = moto.create_table().await.table_name().to_owned();
    let sdk = integration_tests::moto::moto_sdk_config(&tap.endpoint(), "bench");
    let table = Arc::new(DynamoTable::with_client(
        aws_sdk_dynamodb::Client::new(&sdk),
        name,
    ));
    let counting = Arc::new(Counting::new(table.clone()));
    let blobs = Arc::new(moto.create_bucket().await);
    (tap, table, counting, blobs)
}

pub async fn section(opts: &Opts) -> (Value, Vec<Goal>) {
    report::section("DynamoDB cost per operation (moto, ReturnConsumedCapacity=TOTAL; averages)");
    let (tap, table, counting, blobs) = tapped_moto().await;
    let deps = documents::Deps::new(
        TenantConfig::default(),
        counting.clone(),
        blobs,
        PageTokens::new(PAGING_SECRET.as_bytes()),
        documents::Limits::default(),
    );
    let b = Bench {
        deps: &deps,
        table: &table,
        counting: &counting,
        tap: &tap,
        who: fixtures::claims("alice", &[SITE], ISSUER, AUDIENCE),
    };
    let reps = if opts.quick { 3 } else { 10 };
    let docs = 30;
    let mut ops: Vec<(&str, Agg)> = Vec::new();

    let mut agg = Agg::default();
    let mut ids = Vec::new();
    for i in 0..docs {
        let status = if i % 2 == 0 { "draft" } else { "final" };
        let c = b
            .call(
                "POST",
                "/documents",
                Some(json!({
                    "path": format!("cost/{i}.txt"),
                    "content": "a small text document",
                    "tags": [{"key": "status", "value": status}, {"key": "project", "value": "apollo"}],
                })),
            )
            .await;
        ids.push(c.body["documentId"].as_str().expect("id").to_owned());
        agg.add(&c, None);
    }
    ops.push(("create (POST /documents, 2 tags, inline content)", agg));

    let id = ids[0].clone();
    let mut agg = Agg::default();
    for _ in 0..reps {
        let c = b.call("GET", &format!("/documents/{id}"), None).await;
        agg.add(&c, Some(1));
    }
    ops.push(("get (GET /documents/{id})", agg));

    let mut agg = Agg::default();
    let mut agg2 = Agg::default();
    for _ in 0..reps {
        let c = b.call("GET", "/documents?limit=10", None).await;
        agg.add(&c, count(&c.body, "documents"));
        let next = c.body["next"].as_str().expect("a next page").to_owned();
        let c = b
            .call("GET", &format!("/documents?limit=10&next={next}"), None)
            .await;
        agg2.add(&c, count(&c.body, "documents"));
    }
    let list_ratio = agg.read_per_returned();
    ops.push(("list page (GET /documents?limit=10)", agg));
    ops.push(("list next page (next=...)", agg2));

    let mut agg = Agg::default();
    for _ in 0..reps {
        let c = b
            .call(
                "POST",
                "/search?limit=10",
                Some(json!({"query": {"tag": {"key": "status", "eq": "draft"}}})),
            )
            .await;
        agg.add(&c, count(&c.body, "documents"));
    }
    let search_ratio = agg.read_per_returned();
    ops.push(("tag search (POST /search eq, limit 10)", agg));

    let mut agg = Agg::default();
    for i in 0..reps {
        let c = b
            .call(
                "POST",
                &format!("/documents/{id}/tags"),
                Some(json!({"tags": [{"key": "reviewer", "value": format!("r{i}")}]})),
            )
            .await;
        agg.add(&c, None);
    }
    ops.push(("tag write (POST /documents/{id}/tags)", agg));

    let mut agg = Agg::default();
    for i in 0..reps {
        let c = b
            .call(
                "PUT",
                &format!("/documents/{id}/tags/reviewer"),
                Some(json!({"value": format!("s{i}")})),
            )
            .await;
        agg.add(&c, None);
    }
    ops.push(("tag write (PUT /documents/{id}/tags/{key})", agg));

    let mut agg = Agg::default();
    for _ in 0..reps {
        let c = b.call("GET", &format!("/documents/{id}/tags"), None).await;
        agg.add(&c, count(&c.body, "tags"));
    }
    ops.push(("list tags (GET /documents/{id}/tags)", agg));

    let mut agg = Agg::default();
    for i in 0..reps {
        let c = b
            .call(
                "PATCH",
                &format!("/documents/{id}"),
                Some(json!({"path": format!("cost/renamed-{i}.txt")})),
            )
            .await;
        agg.add(&c, None);
    }
    ops.push(("update (PATCH /documents/{id})", agg));

    let mut agg = Agg::default();
    for victim in ids.iter().skip(1).take(reps) {
        let c = b
            .call("DELETE", &format!("/documents/{victim}"), None)
            .await;
        agg.add(&c, None);
    }
    ops.push(("delete (DELETE /documents/{id})", agg));

    let total = tap.total();
    let scans = total.get("Scan").copied().unwrap_or(0);
    let rows: Vec<Vec<String>> = ops
        .iter()
        .map(|(name, a)| {
            vec![
                name.to_string(),
                num(Some(a.per(a.read_units)), 2),
                num(Some(a.per(a.write_units)), 2),
                num(Some(a.per(a.model_read_units)), 2),
                num(Some(a.per(a.model_write_units)), 2),
                num(Some(a.per(a.items_read as f64)), 1),
                num(Some(a.per(a.returned as f64)), 1),
                num(a.read_per_returned(), 2),
                a.ops_text(),
            ]
        })
        .collect();
    report::table(
        &[
            "operation",
            "RCU moto",
            "WCU moto",
            "RCU model",
            "WCU model",
            "items read",
            "returned",
            "read/ret",
            "calls",
        ],
        &rows,
    );
    println!(
        "calls over the whole section (on the wire): {}",
        total
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let any_capacity = ops
        .iter()
        .any(|(_, a)| a.read_units > 0.0 || a.write_units > 0.0);
    if !any_capacity {
        println!("note: moto reported no consumed capacity");
    }
    println!(
        "moto: ConsumedCapacity as moto returns it (none for TransactWriteItems); model: DynamoDB's \
         billing rules applied to the items read and written (strongly consistent reads, \
         transactional writes at 2 WCU per KB)"
    );
    (
        json!({
            "backend": "moto_server (DynamoDB emulation; capacity as moto computes it)",
            "documents_in_site": docs,
            "operations": ops.iter().map(|(n, a)| (n.to_string(), a.json())).collect::<Map<_, _>>(),
            "calls_by_operation_total": total,
            "scan_calls": scans,
        }),
        vec![
            Goal::ratio("items read per item returned, list", list_ratio, 1.2),
            Goal::ratio("items read per item returned, search", search_ratio, 1.2),
            Goal::new("DynamoDB Scan calls", Some(scans as f64), 0.0, "calls"),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_targets_split_across_reads() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: DynamoDB_20120810.Query\r\nContent-Length: 2\r\n\r\n{}POST / HTTP/1.1\r\nx-amz-target: DynamoDB_20120810.TransactWriteItems\r\n\r\n";
        for split in [1, 7, 30, raw.len()] {
            let mut s = TargetScanner::default();
            let mut found = Vec::new();
            for chunk in raw.chunks(split) {
                s.feed(chunk, |op| found.push(op.to_owned()));
            }
            assert_eq!(found, ["Query", "TransactWriteItems"], "split {split}");
        }
        let mut s = TargetScanner::default();
        let mut n = 0;
        let long = format!("{}\r\nX-Amz-Target: a.Scan\r\n", "x".repeat(1000));
        s.feed(long.as_bytes(), |op| {
            assert_eq!(op, "Scan");
            n += 1;
        });
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn the_tap_counts_and_forwards() {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = vec![0; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            s.write_all(b"pong").await.unwrap();
        });
        let tap = Tap::start(&format!("http://{up_addr}")).await.unwrap();
        let mut c = TcpStream::connect(tap.endpoint().trim_start_matches("http://"))
            .await
            .unwrap();
        c.write_all(b"POST / HTTP/1.1\r\nX-Amz-Target: DynamoDB_20120810.GetItem\r\n\r\n")
            .await
            .unwrap();
        let mut got = [0u8; 4];
        c.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
        assert_eq!(tap.take().get("GetItem"), Some(&1));
        assert!(tap.take().is_empty());
        assert_eq!(tap.total().get("GetItem"), Some(&1));
    }
}
