//! CPU-bound guests are time-sliced: a host full of spinning guests still stops a cooperative
//! guest gracefully and kills on time.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_spinners_do_not_delay_a_graceful_stop_or_a_deadline() {
    let mut spinners = Vec::new();
    for index in 0..50 {
        spinners.push(start(single(&format!("spinner-{index}"), "spinner", 1, "")).await);
    }
    for spinner in &spinners {
        spinner.wait_running().await;
    }
    // Let the spinners saturate both cores.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let cooperative = start(single("busy-cooperative", "cooperative", 10, "")).await;
    let stubborn = start(single("busy-stubborn", "stubborn", 1, "")).await;
    tokio::time::timeout(Duration::from_secs(10), cooperative.wait_running())
        .await
        .expect("postStart should finish despite the spinners");
    stubborn.wait_running().await;

    let deleted = Instant::now();
    cooperative.delete(None);
    stubborn.delete(None);
    let graceful = finished(&cooperative).await;
    let graceful_after = deleted.elapsed();
    let killed = finished(&stubborn).await;
    let killed_after = deleted.elapsed();

    assert_eq!(
        terminated(&graceful, 0).reason.as_deref(),
        Some("Completed")
    );
    assert!(
        graceful_after < Duration::from_secs(2),
        "a cooperative stop took {graceful_after:?} among 50 spinners"
    );
    assert_eq!(terminated(&killed, 0).reason.as_deref(), Some("Killed"));
    assert!(
        killed_after >= Duration::from_secs(1) && killed_after < Duration::from_millis(1500),
        "a 1 s deadline fired after {killed_after:?} among 50 spinners"
    );

    let killing = Instant::now();
    for spinner in &spinners {
        spinner.kill();
    }
    for spinner in &spinners {
        let status = finished(spinner).await;
        assert_eq!(terminated(&status, 0).reason.as_deref(), Some("Killed"));
    }
    assert!(
        killing.elapsed() < Duration::from_secs(2),
        "{:?}",
        killing.elapsed()
    );
}
