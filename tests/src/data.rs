//! Per-iteration data: a step's `data` CSV gives each iteration its row, and what
//! the demo app counted is each account's own rows' items, once each; an `exec`
//! program gets the same row in its environment.

use crate::harness::{Project, WORKFLOW, events, named, step1};

fn workflow() -> String {
    WORKFLOW
        .replace(
            "name = \"add-to-cart\"\n",
            "name = \"add-to-cart\"\ndata = \"data/orders.csv\"\n",
        )
        .replace(
            "  { goto = \"{base_url}/item/{iteration}\" },\n  { click = \"#add\" },\n  { wait_text = \"#done\", contains = \"added {iteration}\" },\n",
            "  { goto = \"{base_url}/item/{data.item}\" },\n  { click = \"#add\" },\n  { wait_text = \"#done\", contains = \"added {data.item}\" },\n\
             \x20 { exec = [\"sh\", \"-c\", \"test \\\"$BATCH_DATA_ITEM\\\" = \\\"$1\\\" && test \\\"$BATCH_DATA_NOTE\\\" = \\\"$2\\\"\", \"sh\", \"{data.item}\", \"{data.note}\"] },\n",
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_account_takes_its_own_rows_and_exec_gets_the_same_row() {
    let p = Project::new(2).await;
    let wf = workflow();
    assert!(wf.contains("{data.item}") && wf.contains("data = "), "{wf}");
    p.write("workflow.toml", &wf);
    std::fs::create_dir_all(p.path("data")).unwrap();
    p.write(
        "data/orders.csv",
        "account,item,note\n1,3,gift\n2,4,\n1,5,\"door, please\"\n2,6,x\n",
    );
    let run = p
        .run(&step1("1-2", &["--quantity", "2", "--concurrent"]))
        .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        p.adds("user-1").into_iter().collect::<Vec<_>>(),
        [(3, 1), (5, 1)]
    );
    assert_eq!(
        p.adds("user-2").into_iter().collect::<Vec<_>>(),
        [(4, 1), (6, 1)]
    );
    assert_eq!(named(&events(&p.run_dir()), "iteration_ok").len(), 4);
    p.assert_nothing_left();

    // A third iteration has no row for either account: refused before any launch.
    std::fs::remove_dir_all(p.path("runs")).unwrap();
    let run = p.run(&step1("1-2", &["--quantity", "3"])).await;
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "step 1, data: {} has 2 row(s) for account 1, fewer than the 3 iteration(s) of --quantity",
            p.path("workflow.toml").parent().unwrap().join("data/orders.csv").display()
        )),
        "{}",
        run.stderr
    );
    assert!(p.run_dirs().is_empty(), "nothing ran");
    p.assert_nothing_left();
}
