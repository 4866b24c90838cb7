use mlflow_tracing::trace;

#[trace]
fn broken(x: i32) -> i32 {
    let y = x +;
    y
}

fn main() {}
