//! `hnsw-batch mcp`: a real MCP client session (rmcp's client over the spawned server's stdio)
//! through every tool, good input and bad, and a restart on the same directory.

use std::path::Path;
use std::process::Command;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::ServiceExt;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_hnsw-batch");
const DIM: usize = 8;
const N: u64 = 200;

type Client = RunningService<RoleClient, ()>;

/// Starts `hnsw-batch mcp DIR ARGS..` in `cwd` and opens a session with it.
async fn start(dir: &Path, cwd: &Path, args: &[&str]) -> Client {
    let cmd = tokio::process::Command::new(BIN).configure(|c| {
        c.arg("mcp").arg(dir).args(args).current_dir(cwd);
    });
    let transport = TokioChildProcess::new(cmd).expect("spawn hnsw-batch mcp");
    ().serve(transport).await.expect("MCP session starts")
}

/// Calls a tool; returns whether it is a tool error, and its structured result.
async fn call(client: &Client, name: &str, args: Value) -> (bool, Value) {
    let Value::Object(args) = args else { panic!("arguments must be an object") };
    let r: CallToolResult = client
        .call_tool(CallToolRequestParams::new(name.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name}: protocol error {e}"));
    let value = r.structured_content.clone().unwrap_or_else(|| panic!("{name}: no structured result: {r:?}"));
    (r.is_error == Some(true), value)
}

/// Calls a tool that must succeed.
async fn ok(client: &Client, name: &str, args: Value) -> Value {
    let (is_error, v) = call(client, name, args).await;
    assert!(!is_error, "{name} failed: {v}");
    v
}

/// Calls a tool that must fail with `code`; returns the error result.
async fn fails(client: &Client, name: &str, args: Value, code: &str) -> Value {
    let (is_error, v) = call(client, name, args).await;
    assert!(is_error, "{name} should have failed with {code}: {v}");
    assert_eq!(v["error"]["code"], code, "{name}: {v}");
    v
}

/// Deterministic integer vectors in [-8, 8]: their squared L2 distances are exact in `f32`
/// whatever the order of summation, so the server's distances can be compared exactly.
fn vector(id: u64) -> Vec<f32> {
    let mut s = id.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(12345);
    (0..DIM)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 17) as f32 - 8.0
        })
        .collect()
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn group(id: u64) -> &'static str {
    if id.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

fn document(id: u64) -> Value {
    json!({
        "id": id,
        "vector": vector(id),
        "content": format!("document number {id}"),
        "metadata": {"group": group(id), "rank": id},
    })
}

fn count(info: &Value) -> u64 {
    info["count"].as_u64().unwrap_or_else(|| panic!("no count in {info}"))
}

/// Checks one query's hits against brute force over the live `ids`: the hit distances are the
/// `k` smallest, each exactly its document's distance, and content and metadata come back.
#[track_caller]
fn check_hits(result: &Value, q: &[f32], ids: &[u64], k: usize) {
    let hits = result["hits"].as_array().unwrap_or_else(|| panic!("no hits: {result}"));
    let mut expected: Vec<f32> = ids.iter().map(|&id| l2(q, &vector(id))).collect();
    expected.sort_by(f32::total_cmp);
    expected.truncate(k);
    let got: Vec<f32> = hits.iter().map(|h| h["distance"].as_f64().unwrap() as f32).collect();
    assert_eq!(got, expected, "hit distances of {result}");
    for h in hits {
        let id = h["id"].as_u64().unwrap();
        assert!(ids.contains(&id), "hit {id} is not a live document");
        assert_eq!(h["distance"].as_f64().unwrap() as f32, l2(q, &vector(id)), "distance of {id}");
        assert_eq!(h["content"], format!("document number {id}"));
        assert_eq!(h["metadata"]["group"], group(id));
        assert!(h["metadata"].get("_content").is_none(), "content leaks into metadata: {h}");
    }
}

#[tokio::test]
async fn mcp_session_through_every_tool_then_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("db");
    let limits = ["--max-batch", "300", "--max-queries", "20", "--max-limit", "50"];
    let client = start(&dir, root, &limits).await;

    // The tool list, with an input schema for each.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        ["batch_add", "batch_search", "batch_update", "batch_delete", "export", "import", "info"]
    );
    let add_schema = serde_json::to_value(&*tools[0].input_schema).unwrap();
    assert_eq!(add_schema["type"], "object");
    assert!(add_schema["properties"]["documents"].is_object(), "{add_schema}");
    assert_eq!(add_schema["required"], json!(["documents"]));

    // No index yet: it is created by the first batch_add.
    let info = ok(&client, "info", json!({})).await;
    assert_eq!(info["initialized"], false);
    assert_eq!(count(&info), 0);
    // A search before anything exists finds nothing.
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": vector(1)}]})).await;
    assert_eq!(r["results"][0]["hits"], json!([]));

    // batch_add, atomic: every document added, per-document results in order.
    let docs: Vec<Value> = (0..N).map(document).collect();
    let r = ok(&client, "batch_add", json!({"documents": docs})).await;
    assert_eq!(
        (r["total"].as_u64(), r["inserted"].as_u64(), r["failed"].as_u64()),
        (Some(N), Some(N), Some(0))
    );
    assert_eq!(r["results"][7], json!({"index": 7, "id": 7, "status": "inserted"}));
    let info = ok(&client, "info", json!({})).await;
    assert_eq!((info["initialized"].as_bool(), info["dim"].as_u64(), count(&info)), (Some(true), Some(8), N));
    assert_eq!(info["metric"], "l2");
    let mut live: Vec<u64> = (0..N).collect();

    // An atomic batch with one bad vector (1e39 is no f32) and one of the wrong length writes
    // nothing and reports both.
    let mut bad = vec![document(500), document(501), document(502)];
    bad[1]["vector"][3] = json!(1e39);
    bad[2]["vector"] = json!([1.0, 2.0]);
    let e = fails(&client, "batch_add", json!({"documents": bad, "atomic": true}), "batch_rejected").await;
    assert_eq!(e["written"], 0);
    assert_eq!(e["results"][0]["status"], "not_written");
    assert_eq!(e["results"][1]["error"]["code"], "invalid_vector");
    assert_eq!(e["results"][2]["error"]["code"], "dimension_mismatch");
    assert_eq!(count(&ok(&client, "info", json!({})).await), N);

    // The same batch best effort: the good one goes in; a duplicate id is reported too.
    let mut bad = vec![document(500), document(501), document(502), document(3)];
    bad[1]["vector"][3] = json!(1e39);
    bad[2]["vector"] = json!([1.0, 2.0]);
    let r = ok(&client, "batch_add", json!({"documents": bad, "atomic": false})).await;
    assert_eq!((r["inserted"].as_u64(), r["failed"].as_u64()), (Some(1), Some(3)));
    let status: Vec<&str> =
        r["results"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["inserted", "failed", "failed", "failed"]);
    assert_eq!(r["results"][3]["error"]["code"], "duplicate_id");
    live.push(500);

    // Reserved metadata key, and arguments that do not fit the schema: typed tool errors.
    let mut doc = document(600);
    doc["metadata"]["_content"] = json!("sneaky");
    let e = fails(&client, "batch_add", json!({"documents": [doc]}), "batch_rejected").await;
    assert_eq!(e["results"][0]["error"]["code"], "invalid_metadata");
    let e =
        fails(&client, "batch_add", json!({"documents": [{"id": 1, "vector": "zero"}]}), "invalid_arguments")
            .await;
    assert!(e["error"]["message"].as_str().unwrap().contains("documents[0].vector"), "{e}");
    fails(&client, "batch_add", json!({"documents": [{"id": 1, "embedding": [0.0]}]}), "invalid_arguments")
        .await;
    fails(&client, "batch_add", json!({"docs": []}), "invalid_arguments").await;
    // Over the server's limits.
    let many: Vec<Value> = (1000..1301).map(document).collect();
    let e = fails(&client, "batch_add", json!({"documents": many}), "limit_exceeded").await;
    assert_eq!((e["max"].as_u64(), e["got"].as_u64()), (Some(300), Some(301)));
    let e = fails(
        &client,
        "batch_search",
        json!({"queries": [{"vector": vector(1), "limit": 51}]}),
        "limit_exceeded",
    )
    .await;
    assert_eq!(e["max"], 50);
    let queries: Vec<Value> = (0..21).map(|i| json!({"vector": vector(i)})).collect();
    fails(&client, "batch_search", json!({"queries": queries}), "limit_exceeded").await;
    assert_eq!(count(&ok(&client, "info", json!({})).await), N + 1);

    // batch_search: exact distances (ef above the document count makes the search exhaustive),
    // content and metadata; a filter; per-query errors in order.
    let q0 = vector(5);
    let q1: Vec<f32> = vector(77).iter().map(|x| x + 1.0).collect();
    let r = ok(
        &client,
        "batch_search",
        json!({"queries": [
            {"vector": q0, "limit": 10, "ef": 256},
            {"vector": q1, "limit": 5, "ef": 256},
            {"vector": q1, "limit": 10, "ef": 256, "filter": {"group": "odd", "rank": {"$lt": 150}}},
            {"vector": [1.0, 2.0], "limit": 3},
            {"vector": q0, "filter": {"rank": {"$bogus": 1}}},
        ], "max_parallel": 3}),
    )
    .await;
    let res = r["results"].as_array().unwrap();
    assert_eq!(res.len(), 5);
    for (i, x) in res.iter().enumerate() {
        assert_eq!(x["index"], i);
    }
    assert_eq!(
        (res[0]["hits"][0]["id"].as_u64(), res[0]["hits"][0]["distance"].as_f64()),
        (Some(5), Some(0.0))
    );
    check_hits(&res[0], &q0, &live, 10);
    check_hits(&res[1], &q1, &live, 5);
    let odd: Vec<u64> = live.iter().copied().filter(|&id| id % 2 == 1 && id < 150).collect();
    check_hits(&res[2], &q1, &odd, 10);
    assert_eq!(res[3]["error"]["code"], "dimension_mismatch");
    assert_eq!(res[4]["error"]["code"], "invalid_filter");

    // batch_update by ids: metadata set and removed, content replaced; not found and repeats.
    let r = ok(
        &client,
        "batch_update",
        json!({"document_ids": [10, 11, 9999, 10],
               "updates": {"metadata_updates": {"reviewed": true, "rank": null}, "content": "reviewed"}}),
    )
    .await;
    let status: Vec<&str> =
        r["results"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["updated", "updated", "not_found", "duplicate"]);
    let r = ok(
        &client,
        "batch_search",
        json!({"queries": [{"vector": vector(11), "limit": 5, "ef": 256, "filter": {"reviewed": true}}]}),
    )
    .await;
    let hits = r["results"][0]["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["id"], 11);
    assert_eq!(hits[0]["content"], "reviewed");
    assert_eq!(hits[0]["metadata"], json!({"group": "odd", "reviewed": true}));
    // By filter: a dry run counts and changes nothing; over max_documents is refused.
    let r = ok(
        &client,
        "batch_update",
        json!({"filter": {"group": "even"}, "updates": {"metadata_updates": {"flag": 1}}, "dry_run": true}),
    )
    .await;
    assert_eq!((r["matched"].as_u64(), r["updated"].as_u64()), (Some(101), Some(0)));
    let e = fails(
        &client,
        "batch_update",
        json!({"filter": {"group": "even"}, "updates": {"metadata_updates": {"flag": 1}}, "max_documents": 100}),
        "refused",
    )
    .await;
    assert_eq!(e["matched"], 101);
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": q0, "filter": {"flag": 1}}]})).await;
    assert_eq!(r["results"][0]["hits"], json!([]), "a dry run or a refusal changed metadata");
    // A new vector for one document: it is now found at the new place.
    let moved = vec![100.0f32; DIM];
    ok(&client, "batch_update", json!({"document_ids": [42], "updates": {"vector": moved}})).await;
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": moved, "limit": 1}]})).await;
    assert_eq!(
        (r["results"][0]["hits"][0]["id"].as_u64(), r["results"][0]["hits"][0]["distance"].as_f64()),
        (Some(42), Some(0.0))
    );
    assert_eq!(r["results"][0]["hits"][0]["metadata"]["group"], "even", "metadata kept by a vector update");
    fails(
        &client,
        "batch_update",
        json!({"document_ids": [1], "updates": {"vector": [1.0]}}),
        "invalid_vector",
    )
    .await;
    fails(&client, "batch_update", json!({"document_ids": [1], "updates": {}}), "invalid_arguments").await;
    fails(
        &client,
        "batch_update",
        json!({"document_ids": [1], "filter": {"a": 1}, "updates": {"content": "x"}}),
        "invalid_arguments",
    )
    .await;

    // batch_delete: a dry run reports the count and deletes nothing; a wrong confirm_count is
    // refused; the right one deletes exactly those.
    let filter = json!({"group": "odd", "rank": {"$gte": 100}});
    let r = ok(&client, "batch_delete", json!({"filter": filter, "dry_run": true})).await;
    let matched = r["matched"].as_u64().unwrap();
    assert_eq!(matched, 50);
    assert_eq!(r["deleted"], 0);
    assert_eq!(count(&ok(&client, "info", json!({})).await), N + 1);
    let e =
        fails(&client, "batch_delete", json!({"filter": filter, "confirm_count": matched + 1}), "refused")
            .await;
    assert_eq!(e["matched"], matched);
    assert_eq!(count(&ok(&client, "info", json!({})).await), N + 1);
    fails(&client, "batch_delete", json!({"filter": filter, "max_documents": 10}), "refused").await;
    let r = ok(&client, "batch_delete", json!({"filter": filter, "confirm_count": matched})).await;
    assert_eq!(r["deleted"], matched);
    live.retain(|&id| !(id % 2 == 1 && (100..N).contains(&id)));
    // By ids, in order: deleted, not found, repeated.
    let r = ok(&client, "batch_delete", json!({"document_ids": [0, 101, 0, 2]})).await;
    let status: Vec<&str> =
        r["results"].as_array().unwrap().iter().map(|x| x["status"].as_str().unwrap()).collect();
    assert_eq!(status, ["deleted", "not_found", "duplicate", "deleted"]);
    live.retain(|&id| id != 0 && id != 2);
    fails(&client, "batch_delete", json!({"document_ids": [4, 6], "confirm_count": 3}), "refused").await;
    fails(&client, "batch_delete", json!({"filter": {"$or": 5}}), "invalid_filter").await;
    fails(&client, "batch_delete", json!({}), "invalid_arguments").await;
    assert_eq!(count(&ok(&client, "info", json!({})).await), live.len() as u64);

    // export, then import of a file with new documents and one bad row.
    let r = ok(&client, "export", json!({"path": "out.jsonl"})).await;
    assert_eq!(r["exported"], live.len());
    let text = std::fs::read_to_string(root.join("out.jsonl")).unwrap();
    assert_eq!(text.lines().count(), live.len());
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["metadata"]["_content"], format!("document number {}", line["id"]));
    fails(&client, "export", json!({"path": "out.jsonl"}), "file_exists").await;
    fails(&client, "export", json!({"path": "../outside.jsonl"}), "path_not_allowed").await;
    fails(&client, "export", json!({"path": "db/x.jsonl"}), "path_not_allowed").await;
    let r = ok(&client, "export", json!({"path": "out.fvecs"})).await;
    assert_eq!(r["ids_path"], root.join("out.fvecs.ids.npy").canonicalize().unwrap().display().to_string());
    let mut rows = String::new();
    for id in 1000..1010u64 {
        rows.push_str(&format!(
            "{}\n",
            json!({"id": id, "vector": vector(id), "metadata": {"group": "new"}})
        ));
    }
    rows.push_str("{\"id\": 1010, \"vector\": [1, 2]}\n");
    std::fs::write(root.join("new.jsonl"), rows).unwrap();
    // Over max_errors: refused at the bad row, before this small file's first chunk went in.
    let e = fails(&client, "import", json!({"path": "new.jsonl"}), "invalid_input").await;
    assert!(e["error"]["message"].as_str().unwrap().contains("line 11"), "{e}");
    assert_eq!((e["imported"].as_u64(), e["count"].as_u64()), (Some(0), Some(live.len() as u64)));
    let r = ok(&client, "import", json!({"path": "new.jsonl", "max_errors": 1})).await;
    assert_eq!((r["imported"].as_u64(), r["skipped"].as_u64()), (Some(10), Some(1)));
    assert_eq!(r["skipped_rows"].as_array().unwrap().len(), 1);
    live.extend(1000..1010);
    fails(&client, "import", json!({"path": "missing.jsonl"}), "invalid_input").await;
    // A vector update by filter, as a dry run: reported, nothing changed.
    let r = ok(
        &client,
        "batch_update",
        json!({"filter": {"group": "new"}, "updates": {"vector": vec![0.0f32; DIM]}, "dry_run": true}),
    )
    .await;
    assert_eq!((r["matched"].as_u64(), r["updated"].as_u64()), (Some(10), Some(0)));
    assert_eq!(r["results"][0]["status"], "would_update");
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": vector(1003), "limit": 1}]})).await;
    assert_eq!(
        (r["results"][0]["hits"][0]["id"].as_u64(), r["results"][0]["hits"][0]["distance"].as_f64()),
        (Some(1003), Some(0.0))
    );
    let info = ok(&client, "info", json!({})).await;
    assert_eq!(count(&info), live.len() as u64);
    fails(&client, "info", json!({"verbose": true}), "invalid_arguments").await;

    // An unknown tool is a protocol error.
    let unknown = client.call_tool(CallToolRequestParams::new("drop_everything")).await;
    assert!(unknown.is_err(), "{unknown:?}");
    client.cancel().await.unwrap();

    // A restart on the same directory sees every acknowledged write.
    let client = start(&dir, root, &[]).await;
    let info = ok(&client, "info", json!({})).await;
    assert_eq!((count(&info), info["dim"].as_u64()), (live.len() as u64, Some(8)));
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": q1, "limit": 10, "ef": 512}]})).await;
    // Document 42 now has the vector `moved`.
    let now = |id: u64| if id == 42 { moved.clone() } else { vector(id) };
    let mut expected: Vec<f32> = live.iter().map(|&id| l2(&q1, &now(id))).collect();
    expected.sort_by(f32::total_cmp);
    expected.truncate(10);
    let hits = r["results"][0]["hits"].as_array().unwrap();
    let got: Vec<f32> = hits.iter().map(|h| h["distance"].as_f64().unwrap() as f32).collect();
    assert_eq!(got, expected);
    for h in hits {
        let id = h["id"].as_u64().unwrap();
        assert!(live.contains(&id), "deleted document {id} came back");
        assert_eq!(h["distance"].as_f64().unwrap() as f32, l2(&q1, &now(id)));
    }
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": vector(11), "limit": 1}]})).await;
    assert_eq!(r["results"][0]["hits"][0]["content"], "reviewed");
    assert_eq!(r["results"][0]["hits"][0]["metadata"]["reviewed"], true);
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": vector(1005), "limit": 1}]})).await;
    assert_eq!(r["results"][0]["hits"][0]["id"], 1005);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn mcp_first_batch_creates_the_index_and_a_rejected_one_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh");
    let client = start(&dir, tmp.path(), &["--metric", "cosine", "--max-request-mib", "1"]).await;
    // The first document has the wrong length for the others: atomic, so nothing is created
    // and the dimension is not fixed.
    let docs = json!([{"id": 1, "vector": [1.0, 0.0]}, {"id": 2, "vector": [1.0, 0.0, 0.0]}]);
    fails(&client, "batch_add", json!({"documents": docs}), "batch_rejected").await;
    let info = ok(&client, "info", json!({})).await;
    assert_eq!(info["initialized"], false);
    let docs = json!([{"id": 1, "vector": [1.0, 0.0, 0.0]}, {"id": 2, "vector": [0.0, 1.0, 0.0]}]);
    ok(&client, "batch_add", json!({"documents": docs})).await;
    let info = ok(&client, "info", json!({})).await;
    assert_eq!((info["dim"].as_u64(), info["metric"].as_str(), count(&info)), (Some(3), Some("cosine"), 2));
    // Cosine: a zero vector is invalid.
    let e = fails(
        &client,
        "batch_add",
        json!({"documents": [{"id": 3, "vector": [0.0, 0.0, 0.0]}]}),
        "batch_rejected",
    )
    .await;
    assert_eq!(e["results"][0]["error"]["code"], "invalid_vector");
    // A document that expired is stored but never found.
    let docs =
        json!([{"id": 4, "vector": [0.0, 0.0, 1.0], "expires_at": 1}, {"id": 5, "vector": [0.0, 0.5, 1.0]}]);
    ok(&client, "batch_add", json!({"documents": docs})).await;
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": [0.0, 0.0, 1.0], "limit": 10}]})).await;
    let ids: Vec<u64> =
        r["results"][0]["hits"].as_array().unwrap().iter().map(|h| h["id"].as_u64().unwrap()).collect();
    assert_eq!(ids[0], 5);
    assert!(!ids.contains(&4), "expired document returned: {r}");
    // Over --max-request-mib (1 MiB, and under the transport's 2 MiB): a typed error.
    let big = "x".repeat(1_200_000);
    let e = fails(
        &client,
        "batch_add",
        json!({"documents": [{"id": 9, "vector": [1.0, 1.0, 1.0], "content": big}]}),
        "limit_exceeded",
    )
    .await;
    assert_eq!(e["limit"], "request bytes");
    let r = ok(&client, "batch_search", json!({"queries": [{"vector": [1.0, 1.0, 1.0], "limit": 10}]})).await;
    assert_eq!(r["results"][0]["hits"].as_array().unwrap().len(), 3, "{r}");
    client.cancel().await.unwrap();

    // Flags that contradict the existing index stop the server before it serves.
    let out = Command::new(BIN).arg("mcp").arg(&dir).args(["--dim", "4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dim 4 (it has 3)"));
    assert!(out.stdout.is_empty(), "nothing but the protocol on stdout");
    // A directory holding other files is not taken over.
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let out = Command::new(BIN).arg("mcp").arg(&other).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
