//! The grammar of `#[trace(...)]`:
//!
//! ```text
//! trace-args := (arg ("," arg)* ","?)?
//! arg        := "name" "=" string
//!             | "span_type" "=" string
//!             | "attributes" "(" (key "=" expr),* ")"     key := identifier | string
//!             | "skip" "(" identifier,* ")"
//!             | "skip_all"
//! ```
//!
//! Every error points at the offending token.

use std::collections::HashSet;

use proc_macro2::Span;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitStr, Token, parenthesized};

/// A key of `attributes(...)`: `model = …` or `"model.name" = …`.
pub(crate) struct AttributeArg {
    pub(crate) key: String,
    pub(crate) key_span: Span,
    pub(crate) value: Expr,
}

#[derive(Default)]
pub(crate) struct TraceArgs {
    pub(crate) name: Option<LitStr>,
    pub(crate) span_type: Option<LitStr>,
    pub(crate) attributes: Vec<AttributeArg>,
    pub(crate) skip: Vec<Ident>,
    pub(crate) skip_all: bool,
}

impl Parse for TraceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = TraceArgs::default();
        let mut seen = HashSet::new();
        while !input.is_empty() {
            let keyword: Ident = input.parse()?;
            let keyword_text = keyword.to_string();
            if !seen.insert(keyword_text.clone()) {
                return Err(syn::Error::new(
                    keyword.span(),
                    format!("duplicate `{keyword_text}` argument"),
                ));
            }
            match keyword_text.as_str() {
                "name" => args.name = Some(parse_string_value(input, &keyword)?),
                "span_type" => args.span_type = Some(parse_string_value(input, &keyword)?),
                "attributes" => args.attributes = parse_attributes(input)?,
                "skip" => {
                    let content;
                    parenthesized!(content in input);
                    args.skip = Punctuated::<Ident, Token![,]>::parse_terminated(&content)?
                        .into_iter()
                        .collect();
                }
                "skip_all" => args.skip_all = true,
                _ => {
                    return Err(syn::Error::new(
                        keyword.span(),
                        format!(
                            "unknown argument `{keyword_text}`; expected `name`, `span_type`, `attributes(...)`, \
                             `skip(...)` or `skip_all`"
                        ),
                    ));
                }
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

fn parse_string_value(input: ParseStream<'_>, keyword: &Ident) -> syn::Result<LitStr> {
    input.parse::<Token![=]>()?;
    let value: LitStr = input.parse().map_err(|error| {
        syn::Error::new(error.span(), format!("`{keyword}` takes a string literal"))
    })?;
    if value.value().trim().is_empty() {
        return Err(syn::Error::new(
            value.span(),
            format!("`{keyword}` must not be empty"),
        ));
    }
    Ok(value)
}

fn parse_attributes(input: ParseStream<'_>) -> syn::Result<Vec<AttributeArg>> {
    let content;
    parenthesized!(content in input);
    let mut attributes: Vec<AttributeArg> = Vec::new();
    while !content.is_empty() {
        let (key, key_span) = if content.peek(LitStr) {
            let literal: LitStr = content.parse()?;
            (literal.value(), literal.span())
        } else {
            let ident: Ident = content.parse()?;
            (
                ident.to_string().trim_start_matches("r#").to_owned(),
                ident.span(),
            )
        };
        if attributes.iter().any(|existing| existing.key == key) {
            return Err(syn::Error::new(
                key_span,
                format!("duplicate attribute key `{key}`"),
            ));
        }
        content.parse::<Token![=]>()?;
        let value: Expr = content.parse()?;
        attributes.push(AttributeArg {
            key,
            key_span,
            value,
        });
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(attributes)
}
