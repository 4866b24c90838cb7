//! The `#[trace]` attribute and the `trace_call!` macro of [`mlflow-tracing`](https://docs.rs/mlflow-tracing).
//! Use them through that crate, which re-exports them.
//!
//! # `#[trace]`
//!
//! ```ignore
//! #[trace]                                             // span named after the function, type UNKNOWN
//! #[trace(name = "agent", span_type = "AGENT")]
//! #[trace(attributes(model = "gpt-4o", temperature = 0.1, "dotted.key" = true, run = run_id()))]
//! #[trace(skip(api_key), span_type = "LLM")]           // arguments not recorded
//! #[trace(skip_all)]
//! ```
//!
//! Works on free functions, methods (`self` is not recorded), generic functions and `async fn`.
//!
//! - **Inputs**: the arguments, as a JSON object keyed by parameter name. Each value is recorded through
//!   `serde::Serialize` when its type implements it, else as its `Debug` text, else as a `"<type name>"`
//!   placeholder — a missing trait is never a compile error. In a generic function the bounds in scope decide.
//!   Arguments bound by a pattern (`(a, b): (i32, i32)`) are not recorded.
//! - **Output**: the return value, recorded the same way. For a `Result`, the `Ok` value; an `Err` sets the
//!   status ERROR with message `"<Type>: <message>"` and adds an `exception` event with `exception.type`,
//!   `exception.message` and `exception.stacktrace` (the source chain).
//! - **Panics**: the span is marked ERROR with an `exception` event, then the panic continues.
//! - `mlflow.spanFunctionName` is the function's name. Literal attribute values are encoded at compile
//!   time; other expressions are evaluated when the span starts, in the function's body: the parameters
//!   are in scope, and `.await` and `?` work as they do there.
//! - In an `async fn` the span covers the whole future and is current on every poll, so spans started
//!   inside nest under it across `.await`, on any executor and any thread.
//!
//! # `trace_call!`
//!
//! Traces one call of a function you do not own, like `mlflow.trace(fn)(args)`:
//! `trace_call!(score(y_true, y_pred))`, `trace_call!(span_type = "LLM", self.client.chat(request))`,
//! `trace_call!(fetch(url).await)`. The span is named after the function; inputs are keyed by the argument
//! expressions.

mod attr;
mod call;
mod expand;

use proc_macro::TokenStream;

/// Traces a function: see the crate documentation.
#[proc_macro_attribute]
pub fn trace(args: TokenStream, item: TokenStream) -> TokenStream {
    let item_tokens = proc_macro2::TokenStream::from(item.clone());
    let args = match syn::parse::<attr::TraceArgs>(args) {
        Ok(args) => args,
        // Keep the function as written so the only error is the one in the arguments.
        Err(error) => return with_error(error, item_tokens),
    };
    let function = match syn::parse::<expand::MaybeItemFn>(item) {
        Ok(function) => function,
        Err(error) => return with_error(error, item_tokens),
    };
    match expand::expand(args, function) {
        Ok(tokens) => tokens.into(),
        Err(error) => with_error(error, item_tokens),
    }
}

/// Traces one call of a function or method: see the crate documentation.
#[proc_macro]
pub fn trace_call(input: TokenStream) -> TokenStream {
    match syn::parse::<call::TraceCall>(input).and_then(call::expand) {
        Ok(tokens) => tokens.into(),
        Err(error) => error.to_compile_error().into(),
    }
}

fn with_error(error: syn::Error, item: proc_macro2::TokenStream) -> TokenStream {
    let mut tokens = error.to_compile_error();
    tokens.extend(item);
    tokens.into()
}
