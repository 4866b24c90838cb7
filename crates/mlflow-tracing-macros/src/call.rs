//! `trace_call!`: one traced call of a function you do not own.
//!
//! ```text
//! trace_call!([name = "…",] [span_type = "…",] f(a, b))           sync call
//! trace_call!([name = "…",] [span_type = "…",] client.predict(req))
//! trace_call!([name = "…",] [span_type = "…",] f(a).await)         async call: the span covers the await
//! ```
//!
//! The arguments are evaluated first, in order, and recorded under their expression text (`argN` for
//! literals and other complex expressions); the receiver of a method call is evaluated after them.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprAwait, ExprCall, ExprMethodCall, Ident, LitStr, Token};

use crate::expand::{fn_meta, private_imports, record_inputs, record_result};

pub(crate) struct TraceCall {
    name: Option<LitStr>,
    span_type: Option<LitStr>,
    call: Expr,
}

impl Parse for TraceCall {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut name = None;
        let mut span_type = None;
        while input.peek(Ident) && input.peek2(Token![=]) {
            let keyword: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            let slot = match keyword.to_string().as_str() {
                "name" => &mut name,
                "span_type" => &mut span_type,
                other => {
                    return Err(syn::Error::new(
                        keyword.span(),
                        format!("unknown argument `{other}`; expected `name` or `span_type`"),
                    ));
                }
            };
            if slot.replace(value).is_some() {
                return Err(syn::Error::new(
                    keyword.span(),
                    format!("duplicate `{keyword}` argument"),
                ));
            }
            input.parse::<Token![,]>()?;
        }
        let call: Expr = input.parse()?;
        Ok(TraceCall {
            name,
            span_type,
            call,
        })
    }
}

/// A call taken apart: what is called, and its arguments.
enum CallParts<'a> {
    Function {
        func: &'a Expr,
        arguments: &'a Punctuated<Expr, Token![,]>,
    },
    Method {
        call: &'a ExprMethodCall,
    },
}

impl CallParts<'_> {
    /// The span name: the function's or the method's name.
    fn callee(&self) -> String {
        match self {
            CallParts::Function {
                func: Expr::Path(path),
                ..
            } => path
                .path
                .segments
                .last()
                .map_or_else(|| "call".to_owned(), |segment| segment.ident.to_string()),
            CallParts::Function { .. } => "call".to_owned(),
            CallParts::Method { call } => call.method.to_string(),
        }
    }

    fn arguments(&self) -> &Punctuated<Expr, Token![,]> {
        match self {
            CallParts::Function { arguments, .. } => arguments,
            CallParts::Method { call } => &call.args,
        }
    }

    /// The same call with the arguments replaced by the variables they were bound to.
    fn rebuild(&self, bound: &[Ident]) -> TokenStream {
        match self {
            CallParts::Function { func, .. } => quote!(#func(#(#bound),*)),
            CallParts::Method { call } => {
                let ExprMethodCall {
                    receiver,
                    method,
                    turbofish,
                    ..
                } = call;
                quote!(#receiver.#method #turbofish(#(#bound),*))
            }
        }
    }
}

fn call_parts(expr: &Expr) -> syn::Result<CallParts<'_>> {
    match expr {
        Expr::Call(ExprCall { func, args, .. }) => Ok(CallParts::Function {
            func,
            arguments: args,
        }),
        Expr::MethodCall(call) => Ok(CallParts::Method { call }),
        other => Err(syn::Error::new_spanned(
            other,
            "trace_call! takes a function or method call, like `trace_call!(f(a, b))`, \
             `trace_call!(client.predict(req))` or `trace_call!(fetch(url).await)`",
        )),
    }
}

/// An argument's key: its text when it names something (`req`, `self.items`, `&query`), else `argN`.
fn argument_key(index: usize, argument: &Expr) -> String {
    let names_something = match argument {
        Expr::Path(_) | Expr::Field(_) => true,
        Expr::Reference(reference) => matches!(&*reference.expr, Expr::Path(_) | Expr::Field(_)),
        _ => false,
    };
    if !names_something {
        return format!("arg{index}");
    }
    argument
        .to_token_stream()
        .to_string()
        .replace(" . ", ".")
        .replace("& ", "&")
}

pub(crate) fn expand(trace_call: TraceCall) -> syn::Result<TokenStream> {
    let (call, is_async) = match &trace_call.call {
        Expr::Await(ExprAwait { base, .. }) => (&**base, true),
        other => (other, false),
    };
    let parts = call_parts(call)?;
    let callee = parts.callee();
    let span_name = trace_call
        .name
        .as_ref()
        .map_or_else(|| callee.clone(), LitStr::value);
    let span_type = trace_call
        .span_type
        .as_ref()
        .map_or_else(|| "UNKNOWN".to_owned(), LitStr::value);
    let arguments = parts.arguments();
    let bound: Vec<Ident> = (0..arguments.len())
        .map(|index| format_ident!("__mlflow_arg{index}"))
        .collect();
    let values = arguments.iter();
    let inputs: Vec<(String, TokenStream)> = arguments
        .iter()
        .enumerate()
        .zip(&bound)
        .map(|((index, argument), variable)| {
            (argument_key(index, argument), variable.to_token_stream())
        })
        .collect();
    let rebuilt = parts.rebuild(&bound);
    let meta = fn_meta(&span_name, &callee, &span_type, &[]);
    let imports = private_imports();
    let guard = format_ident!("__mlflow_guard");
    let result = format_ident!("__mlflow_result");

    Ok(if is_async {
        let record = record_inputs(&guard, &inputs, quote!(set_inputs_json));
        let outputs = record_result(
            &guard,
            &result,
            quote!(set_outputs_json),
            quote!(record_error),
        );
        quote! {{
            #imports
            #meta
            #(let #bound = #values;)*
            let mut #guard = ::mlflow_tracing::__private::start_async_fn(&__MLFLOW_META);
            if #guard.is_recording() {
                #record
            }
            let #result = #guard.run(#rebuilt).await;
            if #guard.is_recording() {
                #outputs
            }
            #guard.end();
            #result
        }}
    } else {
        let record = record_inputs(&guard, &inputs, quote!(__set_inputs_json));
        let outputs = record_result(
            &guard,
            &result,
            quote!(__set_outputs_json),
            quote!(__record_error),
        );
        quote! {{
            #imports
            #meta
            #(let #bound = #values;)*
            let #guard = ::mlflow_tracing::__private::enter_fn(&__MLFLOW_META);
            if #guard.is_recording() {
                #record
            }
            let #result = ::mlflow_tracing::__private::call_catching(&#guard, || #rebuilt);
            if #guard.is_recording() {
                #outputs
            }
            #result
        }}
    })
}
