mod common;
use common::*;
use rollout_core::config::Order;
use rollout_core::Outcome;
use rollout_strategies::{BlueGreen, Canary, Rolling};

#[tokio::test(start_paused = true)]
async fn rolling_start_first_completes() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.update.order = Order::StartFirst;
    p.update.parallelism = 2;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn rolling_stop_first_completes() {
    let e = env(4);
    let p = plan(&e, 4);
    let (o, _) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn blue_green_completes() {
    let e = env(4);
    let p = plan(&e, 4);
    let (o, _) = run(&BlueGreen, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "blue-green", &o);
}

#[tokio::test(start_paused = true)]
async fn canary_completes() {
    let e = env(4);
    let p = plan(&e, 4);
    let (o, _) = run(&Canary, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "canary", &o);
}
