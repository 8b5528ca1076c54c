//! An agent backed by any OpenAI-compatible chat completions API (OpenAI, Azure OpenAI, vLLM,
//! Ollama, LM Studio, …), streamed with `stream: true` so the user sees the reply as it is written.
//!
//! It asks for the reply's token usage (`stream_options.include_usage`: a last chunk carries it)
//! and reports it as an [`AgentEvent::Usage`]; a server that sends none gets its usage estimated
//! from the text, marked as such. With `keep_raw_events` every event of the stream is passed on
//! as it came, for staff to inspect.

use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{Agent, AgentError, AgentEvent, AgentRequest, AgentStream, Usage, estimate_tokens};
use crate::{config::OpenAiConfig, store::messages::Role};

/// Calls `POST {base_url}/chat/completions`.
pub struct OpenAiAgent {
    http: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<String>,
    system_prompt: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    timeout: Duration,
    keep_raw_events: bool,
}

impl OpenAiAgent {
    /// An agent for `config`; `env_api_key` is used when the configuration sets no key.
    pub fn new(config: &OpenAiConfig, http: reqwest::Client, env_api_key: Option<String>) -> Self {
        Self {
            http,
            url: format!("{}/chat/completions", config.base_url.trim_end_matches('/')),
            model: config.model.clone(),
            api_key: config
                .api_key
                .as_deref()
                .map(str::to_owned)
                .or(env_api_key)
                .filter(|k| !k.trim().is_empty()),
            system_prompt: config.system_prompt.clone(),
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            timeout: config.timeout,
            keep_raw_events: config.keep_raw_events,
        }
    }

    fn body(&self, request: &AgentRequest) -> serde_json::Value {
        let mut messages = Vec::with_capacity(request.history.len() + 1);
        if !self.system_prompt.is_empty() {
            messages.push(json!({"role": "system", "content": self.system_prompt}));
        }
        for line in &request.history {
            let (role, content) = match line.role {
                Role::User => ("user", line.content.clone()),
                Role::Ai => ("assistant", line.content.clone()),
                // The model should know a person said it, and keep it in mind when it resumes.
                Role::Expert => (
                    "assistant",
                    format!("(a human expert wrote) {}", line.content),
                ),
                Role::System => ("system", line.content.clone()),
            };
            messages.push(json!({"role": role, "content": content}));
        }
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if let Some(t) = self.temperature {
            body["temperature"] = json!(t);
        }
        if let Some(m) = self.max_tokens {
            body["max_tokens"] = json!(m);
        }
        body
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<CompletionChoice>,
    #[serde(default)]
    error: Option<ApiError>,
    /// The model that answered, as the server names it.
    #[serde(default)]
    model: Option<String>,
    /// Whole responses, and the last chunk of a stream with `include_usage`.
    #[serde(default)]
    usage: Option<TokenUsage>,
}

#[derive(Deserialize)]
struct TokenUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// What the reply used: as the server reported it, or estimated from the prompt and the reply.
fn usage_of(
    reported: Option<TokenUsage>,
    model: String,
    prompt: &serde_json::Value,
    reply: &str,
) -> Usage {
    match reported {
        Some(u) => Usage {
            model,
            tokens_in: u.prompt_tokens,
            tokens_out: u.completion_tokens,
            estimated: false,
        },
        None => {
            let prompt_text: String = prompt["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["content"].as_str())
                .collect::<Vec<_>>()
                .join("\n");
            Usage {
                model,
                tokens_in: estimate_tokens(&prompt_text),
                tokens_out: estimate_tokens(reply),
                estimated: true,
            }
        }
    }
}

#[derive(Deserialize)]
struct CompletionChoice {
    /// Streamed responses.
    #[serde(default)]
    delta: Option<Message>,
    /// Whole responses, from servers that ignore `stream: true`.
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

impl Agent for OpenAiAgent {
    fn respond(&self, request: AgentRequest) -> AgentStream {
        let body = self.body(&request);
        let mut builder = self.http.post(&self.url).timeout(self.timeout).json(&body);
        let mut model = self.model.clone();
        let keep_raw = self.keep_raw_events;
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        async_stream::stream! {
            let response = match builder.send().await {
                Ok(r) => r,
                Err(e) => {
                    yield Err(AgentError::Transport(switchboard_channel::error_chain(&e)));
                    return;
                }
            };
            let status = response.status();
            if !status.is_success() {
                let text = response.text().await.unwrap_or_default();
                let message = serde_json::from_str::<ErrorBody>(&text)
                    .map(|b| b.error.message)
                    .unwrap_or(text);
                yield Err(AgentError::Api { status: status.as_u16(), message: truncate(&message, 300) });
                return;
            }
            let is_json = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            if is_json {
                let text = match response.text().await {
                    Ok(text) => text,
                    Err(e) => {
                        yield Err(AgentError::Transport(switchboard_channel::error_chain(&e)));
                        return;
                    }
                };
                if keep_raw {
                    yield Ok(AgentEvent::Raw(text.clone()));
                }
                match serde_json::from_str::<Completion>(&text) {
                    Ok(completion) => {
                        let reply = completion.choices.into_iter()
                            .filter_map(|c| c.message.and_then(|m| m.content))
                            .collect::<String>();
                        let model = completion.model.unwrap_or(model);
                        let usage = usage_of(completion.usage, model, &body, &reply);
                        yield Ok(AgentEvent::Delta(reply));
                        yield Ok(AgentEvent::Usage(usage));
                    }
                    Err(e) => yield Err(AgentError::Protocol(e.to_string())),
                }
                return;
            }
            let mut reply = String::new();
            let mut reported = None;
            let mut stream = response.bytes_stream();
            let mut decoder = SseDecoder::default();
            'read: while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        yield Err(AgentError::Transport(switchboard_channel::error_chain(&e)));
                        return;
                    }
                };
                for data in decoder.feed(&chunk) {
                    if data == "[DONE]" {
                        break 'read;
                    }
                    if keep_raw {
                        yield Ok(AgentEvent::Raw(data.clone()));
                    }
                    let completion = match serde_json::from_str::<Completion>(&data) {
                        Ok(c) => c,
                        Err(e) => {
                            yield Err(AgentError::Protocol(format!("{e} in {}", truncate(&data, 100))));
                            return;
                        }
                    };
                    if let Some(error) = completion.error {
                        yield Err(AgentError::Api { status: status.as_u16(), message: truncate(&error.message, 300) });
                        return;
                    }
                    if let Some(name) = completion.model.filter(|m| !m.is_empty()) {
                        model = name;
                    }
                    if completion.usage.is_some() {
                        reported = completion.usage;
                    }
                    for choice in completion.choices {
                        if let Some(content) = choice.delta.and_then(|d| d.content).filter(|c| !c.is_empty()) {
                            reply.push_str(&content);
                            yield Ok(AgentEvent::Delta(content));
                        }
                    }
                }
            }
            yield Ok(AgentEvent::Usage(usage_of(reported, model, &body, &reply)));
        }
        .boxed()
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Splits a server-sent event byte stream into the `data` of each event. Bytes are buffered until
/// a line is complete, so multi-byte characters split across chunks survive.
#[derive(Default)]
struct SseDecoder {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseDecoder {
    fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line = String::from_utf8_lossy(&self.pending[..end]).into_owned();
            // A CR LF pair ends one line.
            let skip = if self.pending[end] == b'\r' && self.pending.get(end + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            self.pending.drain(..end + skip);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(data);
                }
            } else if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_handles_split_chunks_and_line_endings() {
        let mut decoder = SseDecoder::default();
        let stream =
            "data: {\"a\":\"é\"}\r\n\r\n: comment\n\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        let bytes = stream.as_bytes();
        let mut events = Vec::new();
        // Feed one byte at a time: the worst case for boundaries, including inside 'é'.
        for b in bytes {
            events.extend(decoder.feed(std::slice::from_ref(b)));
        }
        assert_eq!(events, vec!["{\"a\":\"é\"}", "one\ntwo", "[DONE]"]);
    }

    #[test]
    fn history_maps_to_chat_roles() {
        let agent = OpenAiAgent::new(
            &OpenAiConfig {
                base_url: "http://x/v1/".into(),
                ..OpenAiConfig::default()
            },
            reqwest::Client::new(),
            Some("k".into()),
        );
        assert_eq!(agent.url, "http://x/v1/chat/completions");
        let request = AgentRequest {
            conversation_id: "c".into(),
            channel: switchboard_channel::Channel::WEB,
            history: vec![
                crate::store::messages::ContextLine {
                    role: Role::User,
                    content: "hi".into(),
                },
                crate::store::messages::ContextLine {
                    role: Role::Ai,
                    content: "hello".into(),
                },
                crate::store::messages::ContextLine {
                    role: Role::Expert,
                    content: "I'm here".into(),
                },
            ],
            opening: false,
        };
        let body = agent.body(&request);
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "assistant"]);
        assert_eq!(body["stream"], true);
    }
}
