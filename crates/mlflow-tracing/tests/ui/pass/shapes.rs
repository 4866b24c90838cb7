use std::fmt::Display;

use mlflow_tracing::{trace, trace_call};

struct Store {
    name: String,
    items: Vec<u32>,
}

impl Store {
    #[trace]
    fn name(&self) -> &str {
        if self.items.is_empty() {
            return "empty";
        }
        &self.name
    }

    #[trace(span_type = "RETRIEVER")]
    fn first<'a>(&'a self, fallback: &'a u32) -> &'a u32 {
        self.items.first().unwrap_or(fallback)
    }

    #[trace]
    fn iter(&self) -> impl Iterator<Item = &u32> + '_ {
        self.items.iter()
    }

    #[trace]
    fn into_items(self) -> Vec<u32> {
        self.items
    }
}

#[trace]
fn parse_all(inputs: &[&str]) -> Result<Vec<i64>, std::num::ParseIntError> {
    let mut parsed = Vec::new();
    for input in inputs {
        parsed.push(input.parse::<i64>()?);
    }
    Ok(parsed)
}

#[trace(attributes(label = format!("{}-{}", "a", 1), weight = 0.5, flag = false, count = -3))]
fn generic<T, U>(value: T, other: U, (left, right): (u8, u8)) -> String
where
    T: Display,
    U: Clone,
{
    let _ = other.clone();
    format!("{value} {left} {right}")
}

#[trace]
fn nothing_returned(counter: &mut u32) {
    *counter += 1;
}

#[trace]
async fn fetch(url: &str) -> Result<usize, std::io::Error> {
    if url.is_empty() {
        return Err(std::io::Error::other("no url"));
    }
    let length = async { url.len() }.await;
    Ok(length)
}

#[trace(name = "r#type")]
fn r#type(r#in: u8) -> u8 {
    r#in
}

async fn call_async() -> Result<usize, std::io::Error> {
    let length = trace_call!(fetch("x").await)?;
    Ok(length)
}

fn main() {
    let store = Store { name: "s".into(), items: vec![1] };
    let _ = store.name();
    let _ = store.first(&0);
    let _ = store.iter().count();
    let _ = store.into_items();
    let _ = parse_all(&["1", "2"]);
    let _ = generic(1, 'c', (1, 2));
    let mut counter = 0;
    nothing_returned(&mut counter);
    let _ = r#type(1);
    let _ = trace_call!(name = "renamed", parse_all(&["3"]));
    let _ = call_async();
}
