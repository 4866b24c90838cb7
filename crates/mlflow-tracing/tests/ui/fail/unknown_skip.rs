use mlflow_tracing::trace;

#[trace(skip(api_key, secret))]
fn call(api_key: &str, question: &str) -> usize {
    api_key.len() + question.len()
}

fn main() {}
