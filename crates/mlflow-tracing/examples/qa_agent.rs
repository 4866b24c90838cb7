//! A question-answering chain: a traced `predict` that builds the chat messages, calls an LLM client it does
//! not own through `trace_call!`, and reads the answer in a `_final_answer` span.
//!
//! The LLM client is a local stand-in that returns an OpenAI-shaped chat completion, so this runs offline.
//! Run: `cargo run -p mlflow-tracing --example qa_agent`

use mlflow_tracing::core::keys;
use mlflow_tracing::{
    SpanType, TraceState, get_current_active_span, get_last_active_trace_id, get_trace, span,
    trace, trace_call,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Message {
    role: String,
    content: String,
}

#[derive(Debug, Serialize)]
struct ChatRequest {
    model: String,
    messages: Vec<Message>,
    temperature: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Choice {
    index: u32,
    message: Message,
    finish_reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct ChatCompletion {
    id: String,
    object: String,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    usage: Usage,
}

/// Stands in for an OpenAI client: answers from a tiny knowledge base, counts words as tokens.
struct LocalLlm;

impl LocalLlm {
    fn chat_completions_create(&self, request: &ChatRequest) -> ChatCompletion {
        let question = request
            .messages
            .last()
            .map_or("", |message| message.content.as_str());
        let answer = if question.to_lowercase().contains("mlflow") {
            "MLflow is an open-source platform for the machine learning lifecycle, including tracing of LLM apps."
        } else {
            "I do not know."
        };
        let prompt_tokens = request
            .messages
            .iter()
            .map(|message| message.content.split_whitespace().count() as u64)
            .sum();
        let completion_tokens = answer.split_whitespace().count() as u64;
        // An instrumented client (like MLflow's autologging integrations) reports token usage on its span.
        if let Some(span) = get_current_active_span() {
            let usage = json!({"input_tokens": prompt_tokens, "output_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens});
            span.set_attribute(keys::CHAT_TOKEN_USAGE, &usage);
        }
        ChatCompletion {
            id: "chatcmpl-local-1".to_owned(),
            object: "chat.completion".to_owned(),
            created: 1_795_478_312,
            model: request.model.clone(),
            choices: vec![Choice {
                index: 0,
                message: Message {
                    role: "assistant".to_owned(),
                    content: answer.to_owned(),
                },
                finish_reason: "stop".to_owned(),
            }],
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
        }
    }
}

struct QaChain {
    llm: LocalLlm,
    model_name: String,
}

impl QaChain {
    #[trace(span_type = "CHAIN")]
    fn predict(&self, question: &str) -> String {
        let messages = vec![
            Message {
                role: "system".to_owned(),
                content: "You are a helpful assistant. Answer briefly.".to_owned(),
            },
            Message {
                role: "user".to_owned(),
                content: question.to_owned(),
            },
        ];
        let request = ChatRequest {
            model: self.model_name.clone(),
            messages,
            temperature: 0.1,
        };
        let completion = trace_call!(
            span_type = "CHAT_MODEL",
            self.llm.chat_completions_create(&request)
        );
        self.final_answer(&completion)
    }

    fn final_answer(&self, completion: &ChatCompletion) -> String {
        let span = span("_final_answer").span_type(SpanType::Parser).start();
        span.set_inputs(completion);
        let answer = completion.choices[0].message.content.clone();
        span.set_outputs(&answer);
        span.set_attribute("model_name", &completion.model);
        span.set_attribute("prompt_tokens", &completion.usage.prompt_tokens);
        span.set_attribute("completion_tokens", &completion.usage.completion_tokens);
        span.set_attribute("total_tokens", &completion.usage.total_tokens);
        answer
    }
}

fn main() {
    // Exports to MLFLOW_TRACKING_URI when it is set; the trace is printed from the in-process buffer either way.
    let _tracing = mlflow_tracing::init();
    let chain = QaChain {
        llm: LocalLlm,
        model_name: "gpt-4o-mini".to_owned(),
    };
    let answer = chain.predict("What is MLflow?");
    eprintln!("answer: {answer}");

    let trace_id = get_last_active_trace_id().expect("predict produced a trace");
    let trace = get_trace(&trace_id).expect("the trace is buffered in process");
    let names: Vec<_> = trace
        .data
        .spans
        .iter()
        .map(|span| span.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["predict", "chat_completions_create", "_final_answer"]
    );
    assert_eq!(trace.info.state, TraceState::Ok);
    let final_answer = &trace.data.spans[2];
    let tokens = |key: &str| {
        final_answer
            .attribute(key)
            .and_then(|value| value.as_u64())
            .unwrap_or_default()
    };
    assert_eq!(
        tokens("total_tokens"),
        tokens("prompt_tokens") + tokens("completion_tokens")
    );
    assert_eq!(
        final_answer.attribute("model_name"),
        Some(json!("gpt-4o-mini"))
    );
    assert!(
        trace
            .info
            .trace_metadata
            .contains_key(keys::META_TOKEN_USAGE)
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&trace.to_json_value()).expect("a JSON value prints")
    );
}
