//! The cost of the journal's fsync at iteration boundaries, side by side: the same
//! number of lines of the same size written as boundaries (`iteration_ok`, fsynced
//! before `emit` returns, group commit) and as ordinary events (written, not
//! fsynced), and — for comparison — one fsync per line under one lock (no grouping,
//! what the journal did first), by 1 and by 10 concurrent writers (10 accounts
//! finishing iterations at once), in a directory on the disk the runs go to. Prints
//! per-line costs and ratios; see docs/benchmarks.md.
//!
//! `cargo run --release -p batch-core --example journal_fsync [DIR] [LINES]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use batch_core::config::Secrets;
use batch_core::journal::{Event, Journal, Observer};

fn measure(dir: &std::path::Path, writers: u64, lines: u64, boundary: bool) -> Duration {
    let path = dir.join(format!("bench-{writers}-{boundary}.jsonl"));
    let _ = std::fs::remove_file(&path);
    let observer: Observer = Arc::new(|_| {});
    let j = Journal::open(&path, observer, Secrets::default(), Default::default()).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..writers {
            let j = j.clone();
            s.spawn(move || {
                for i in 0..lines / writers {
                    // Same fields, same size: only the fsync differs.
                    let (account, step, iteration, attempt) = (w, 1, i as u32, 1);
                    j.emit(if boundary {
                        Event::IterationOk {
                            account,
                            step,
                            iteration,
                            attempt,
                        }
                    } else {
                        Event::LaunchAhead {
                            account,
                            launch: iteration,
                        }
                    });
                    let _ = (step, attempt);
                }
            });
        }
    });
    let took = started.elapsed();
    j.close();
    let _ = std::fs::remove_file(&path);
    took / lines as u32
}

/// One write + one fdatasync per line, both under one lock: no group commit.
fn measure_serial(dir: &std::path::Path, writers: u64, lines: u64) -> Duration {
    use std::io::Write;
    let path = dir.join(format!("serial-{writers}.jsonl"));
    let file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap(),
    );
    let line = Event::IterationOk {
        account: 1,
        step: 1,
        iteration: 1,
        attempt: 1,
    }
    .to_json("2026-01-01T00:00:00.000Z")
    .to_string()
        + "\n";
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            let (file, line) = (&file, &line);
            s.spawn(move || {
                for _ in 0..lines / writers {
                    let mut f = file.lock().unwrap();
                    f.write_all(line.as_bytes()).unwrap();
                    f.sync_data().unwrap();
                }
            });
        }
    });
    let took = started.elapsed();
    let _ = std::fs::remove_file(&path);
    took / lines as u32
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| ".".into()));
    let lines: u64 = args.next().map_or(2000, |n| n.parse().expect("LINES"));
    let dir = tempfile_in(&dir);
    println!("{lines} lines per variant, in {}", dir.display());
    println!(
        "{:<8} {:>14} {:>14} {:>15} {:>12} {:>13}",
        "writers",
        "plain µs/line",
        "group µs/line",
        "serial µs/line",
        "group/plain",
        "serial/group"
    );
    for writers in [1, 10] {
        let plain = measure(&dir, writers, lines, false);
        let synced = measure(&dir, writers, lines, true);
        let serial = measure_serial(&dir, writers, lines);
        println!(
            "{:<8} {:>14.1} {:>14.1} {:>15.1} {:>11.1}× {:>12.1}×",
            writers,
            plain.as_secs_f64() * 1e6,
            synced.as_secs_f64() * 1e6,
            serial.as_secs_f64() * 1e6,
            synced.as_secs_f64() / plain.as_secs_f64(),
            serial.as_secs_f64() / synced.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_in(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.join(format!(".journal-fsync-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
