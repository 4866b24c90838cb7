//! Code generation for `#[trace]` and `trace_call!`.
//!
//! A synchronous function becomes:
//!
//! ```text
//! fn f(a: A) -> R {
//!     static META = FnMeta { name, function_name, span_type, attributes };
//!     let guard = enter_fn(&META);                   // pushes the span on this thread's stack
//!     if guard.is_recording() { inputs {"a": …} }    // Serialize > Debug > type name, chosen at compile time
//!     let body = || -> R { <original body> };
//!     let result = call_catching(&guard, body);      // a panic marks the span ERROR, then unwinds on
//!     outputs or error of result
//!     result                                         // guard drops: the span ends
//! }
//! ```
//!
//! An `async fn` keeps its signature; its body runs inside `AsyncSpan::run`, which makes the span current on
//! every poll, so nesting survives `.await` and moves between threads. The original body is spliced as
//! tokens, never re-parsed, so a syntax error in it is reported by the compiler as the user wrote it.

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::{
    Attribute, Expr, ExprLit, ExprUnary, FnArg, Ident, Lit, Pat, ReturnType, Signature, Type, UnOp,
    Visibility,
};

use crate::attr::{AttributeArg, TraceArgs};

/// A function whose body is kept as tokens.
pub(crate) struct MaybeItemFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: Group,
}

impl Parse for MaybeItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis: Visibility = input.parse()?;
        let sig: Signature = input.parse()?;
        let body: Group = input.parse()?;
        if body.delimiter() != Delimiter::Brace {
            return Err(syn::Error::new(
                body.span(),
                "#[trace] goes on a function with a body",
            ));
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function body"));
        }
        Ok(MaybeItemFn {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl ToTokens for MaybeItemFn {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.body.to_tokens(tokens);
    }
}

/// The traits the generated code calls methods of, imported anonymously.
pub(crate) fn private_imports() -> TokenStream {
    quote! {
        #[allow(unused_imports)]
        use ::mlflow_tracing::__private::{
            OutDebug as _, OutFloat as _, OutOk as _, OutSerialize as _, OutTypeName as _, ProbeDebug as _,
            ProbeDisplay as _, ProbeError as _, ProbeNotResult as _, ViaDebug as _, ViaFloat as _,
            ViaSerialize as _, ViaTypeName as _,
        };
    }
}

/// `"key":` as JSON text.
fn quoted_key(key: &str) -> String {
    format!("{}:", json_string(key))
}

pub(crate) fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            control if (control as u32) < 0x20 => {
                quoted.push_str(&format!("\\u{:04x}", control as u32))
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// JSON text of a literal known at compile time.
fn literal_json(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Str(text) => Some(json_string(&text.value())),
            Lit::Int(integer) => integer
                .base10_parse::<i128>()
                .ok()
                .map(|value| value.to_string()),
            Lit::Float(float) => float
                .base10_parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .map(|value| format!("{value}")),
            Lit::Bool(flag) => Some(flag.value.to_string()),
            _ => None,
        },
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr,
            ..
        }) => literal_json(expr)
            .filter(|json| json.starts_with(|c: char| c.is_ascii_digit()))
            .map(|json| format!("-{json}")),
        Expr::Group(group) => literal_json(&group.expr),
        Expr::Paren(paren) => literal_json(&paren.expr),
        _ => None,
    }
}

/// Statements recording `(key, value expression)` pairs as the inputs object through `guard`.
pub(crate) fn record_inputs(
    guard: &Ident,
    inputs: &[(String, TokenStream)],
    setter: TokenStream,
) -> TokenStream {
    let keys = inputs.iter().map(|(key, _)| quoted_key(key));
    let values = inputs.iter().map(|(_, value)| value);
    // The values are variables (parameters, or the call's arguments bound before), so the closure only
    // borrows them.
    quote! {
        #guard.#setter(::mlflow_tracing::__private::Payload::record(|__mlflow_payload| {
            __mlflow_payload.begin_object();
            #(
                __mlflow_payload.key(#keys);
                (&&&&::mlflow_tracing::__private::Arg(&#values)).__record(__mlflow_payload);
            )*
            __mlflow_payload.end_object();
        }));
    }
}

/// Statements recording `result` as outputs, or its error, through `guard`.
pub(crate) fn record_result(
    guard: &Ident,
    result: &Ident,
    outputs_setter: TokenStream,
    error_setter: TokenStream,
) -> TokenStream {
    quote! {
        match (&&&&::mlflow_tracing::__private::ErrProbe(&#result)).__error_parts() {
            ::core::option::Option::Some(__mlflow_error) => #guard.#error_setter(__mlflow_error),
            ::core::option::Option::None => {
                #guard.#outputs_setter(::mlflow_tracing::__private::Payload::record(|__mlflow_payload| {
                    (&&&&&::mlflow_tracing::__private::OutArg(&#result)).__record_output(__mlflow_payload);
                }));
            }
        }
    }
}

/// The static description of a span.
pub(crate) fn fn_meta(
    name: &str,
    function_name: &str,
    span_type: &str,
    static_attributes: &[(String, String)],
) -> TokenStream {
    let attribute_keys = static_attributes.iter().map(|(key, _)| key);
    let attribute_values = static_attributes.iter().map(|(_, json)| json);
    // An identifier has nothing JSON escapes.
    let function_name_json = format!("\"{function_name}\"");
    quote! {
        static __MLFLOW_META: ::mlflow_tracing::__private::FnMeta = ::mlflow_tracing::__private::FnMeta {
            name: #name,
            function_name_json: #function_name_json,
            span_type: #span_type,
            attributes: &[#((#attribute_keys, #attribute_values)),*],
        };
    }
}

fn returns_unit(output: &ReturnType) -> bool {
    match output {
        ReturnType::Default => true,
        ReturnType::Type(_, ty) => matches!(&**ty, Type::Tuple(tuple) if tuple.elems.is_empty()),
    }
}

/// The return type when it can be written on a closure or a `let`: not `impl Trait`, no elided lifetime.
fn nameable_return_type(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    fn mentions_impl_or_reference(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Punct(punct) => punct.as_char() == '&' || punct.as_char() == '\'',
            TokenTree::Group(group) => mentions_impl_or_reference(group.stream()),
            TokenTree::Literal(_) => false,
        })
    }
    (!mentions_impl_or_reference(ty.to_token_stream())).then_some(&**ty)
}

pub(crate) fn expand(args: TraceArgs, item: MaybeItemFn) -> syn::Result<TokenStream> {
    let MaybeItemFn {
        attrs,
        vis,
        sig,
        body,
    } = item;
    let function_name = sig.ident.to_string().trim_start_matches("r#").to_owned();
    let span_name = args
        .name
        .as_ref()
        .map_or_else(|| function_name.clone(), |name| name.value());
    let span_type = args
        .span_type
        .as_ref()
        .map_or_else(|| "UNKNOWN".to_owned(), |span_type| span_type.value());

    let parameters: Vec<&Ident> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pattern) => Some(&pattern.ident),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect();
    for skipped in &args.skip {
        if !parameters.contains(&skipped) {
            return Err(syn::Error::new(
                skipped.span(),
                format!(
                    "`{skipped}` is not a parameter of `{function_name}`; `skip` takes parameter names"
                ),
            ));
        }
    }
    let recorded: Vec<(String, TokenStream)> = parameters
        .iter()
        .filter(|parameter| {
            !args.skip_all && !args.skip.iter().any(|skipped| skipped == **parameter)
        })
        .map(|parameter| {
            (
                parameter.to_string().trim_start_matches("r#").to_owned(),
                parameter.to_token_stream(),
            )
        })
        .collect();

    let (static_attributes, runtime_attributes) = split_attributes(&args.attributes);
    let meta = fn_meta(&span_name, &function_name, &span_type, &static_attributes);
    let imports = private_imports();
    let guard = format_ident!("__mlflow_guard");
    let result = format_ident!("__mlflow_result");
    let unit = returns_unit(&sig.output);

    let body_tokens = if sig.asyncness.is_some() {
        let inputs = record_inputs(&guard, &recorded, quote!(set_inputs_json));
        let attributes =
            runtime_attribute_statements(&guard, &runtime_attributes, quote!(set_attribute_json));
        let outputs = if unit {
            quote!()
        } else {
            record_result(
                &guard,
                &result,
                quote!(set_outputs_json),
                quote!(record_error),
            )
        };
        let annotation = nameable_return_type(&sig.output).map(|ty| quote!(: #ty));
        quote! {
            #imports
            #meta
            let mut #guard = ::mlflow_tracing::__private::start_async_fn(&__MLFLOW_META);
            if #guard.is_recording() {
                #inputs
                #attributes
            }
            let #result #annotation = #guard.run(async move #body).await;
            if #guard.is_recording() {
                #outputs
            }
            #guard.end();
            #result
        }
    } else {
        let inputs = record_inputs(&guard, &recorded, quote!(__set_inputs_json));
        let attributes =
            runtime_attribute_statements(&guard, &runtime_attributes, quote!(__set_attribute_json));
        let outputs = if unit {
            quote!()
        } else {
            record_result(
                &guard,
                &result,
                quote!(__end_with_outputs),
                quote!(__record_error),
            )
        };
        let annotation = nameable_return_type(&sig.output).map(|ty| quote!(-> #ty));
        quote! {
            #imports
            #meta
            let #guard = ::mlflow_tracing::__private::enter_fn(&__MLFLOW_META);
            if #guard.is_recording() {
                #inputs
                #attributes
            }
            #[allow(unused_mut)]
            let mut __mlflow_body = || #annotation #body;
            let #result = if #guard.is_recording() {
                ::mlflow_tracing::__private::call_catching(&#guard, __mlflow_body)
            } else {
                __mlflow_body()
            };
            if #guard.is_recording() {
                #outputs
            }
            #result
        }
    };
    let body_span = body.span();
    let new_body = Group::new(Delimiter::Brace, body_tokens);
    let mut new_body_with_span = new_body;
    new_body_with_span.set_span(body_span);
    Ok(quote! {
        #(#attrs)*
        #vis #sig #new_body_with_span
    })
}

/// Literal attribute values are encoded now (key, JSON text); other expressions when the span starts.
fn split_attributes(attributes: &[AttributeArg]) -> (Vec<(String, String)>, Vec<&AttributeArg>) {
    let mut static_attributes = Vec::new();
    let mut runtime_attributes = Vec::new();
    for attribute in attributes {
        match literal_json(&attribute.value) {
            Some(json) => static_attributes.push((attribute.key.clone(), json)),
            None => runtime_attributes.push(attribute),
        }
    }
    (static_attributes, runtime_attributes)
}

fn runtime_attribute_statements(
    guard: &Ident,
    attributes: &[&AttributeArg],
    setter: TokenStream,
) -> TokenStream {
    let statements = attributes.iter().map(|AttributeArg { key, key_span: span, value }| {
        quote_spanned! {*span=>
            {
                // Evaluated out here: the expression may use `.await` or `?`, which a closure changes.
                let __mlflow_value = &(#value);
                #guard.#setter(#key, ::mlflow_tracing::__private::Payload::record(|__mlflow_payload| {
                    (&&&&::mlflow_tracing::__private::Arg(__mlflow_value)).__record(__mlflow_payload);
                }));
            }
        }
    });
    quote!(#(#statements)*)
}
