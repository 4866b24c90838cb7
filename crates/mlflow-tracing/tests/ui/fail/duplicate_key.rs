use mlflow_tracing::trace;

#[trace(attributes(model = "a", temperature = 0.1, model = "b"))]
fn first() {}

#[trace(name = "one", name = "two")]
fn second() {}

fn main() {}
