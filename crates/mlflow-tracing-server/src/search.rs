//! MLflow's trace search language: `filter_string` and `order_by`, parsed into an AST that backends compile
//! to parameterized SQL. Client text never becomes SQL text: keys resolve to a closed set of [`Field`]s and
//! values travel as bound parameters.
//!
//! ```text
//! filter  := clause ("AND" clause)*
//! clause  := key op value | key ["NOT"] "IN" "(" value ("," value)* ")" | key "IS" ["NOT"] "NULL"
//! key     := [prefix "."] name          name := identifier | `backticked` | "quoted"
//! op      := = | != | <> | < | <= | > | >= | LIKE | ILIKE | RLIKE
//! value   := 'string' | "string" | number
//! ```

use std::fmt;

/// What a clause compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    TraceId,
    Timestamp,
    ExecutionTime,
    EndTime,
    Status,
    Name,
    RunId,
    ClientRequestId,
    Text,
    Tag(String),
    Metadata(String),
    SpanName,
    SpanType,
    SpanStatus,
    SpanContent,
    SpanAttribute(String),
    /// The value of a trace's valid feedback of this name.
    Feedback(String),
    /// The value of a trace's valid expectation of this name.
    Expectation(String),
}

impl Field {
    fn is_numeric(&self) -> bool {
        matches!(
            self,
            Field::Timestamp | Field::ExecutionTime | Field::EndTime
        )
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
    ILike,
    RLike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    Number(f64),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(text) => write!(f, "{text:?}"),
            Literal::Number(number) => write!(f, "{number}"),
        }
    }
}

/// One clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: Field,
    pub comparator: Comparator,
    pub values: Vec<Literal>,
}

/// One `order_by` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: Field,
    pub ascending: bool,
}

/// A filter or order that could not be read, with the character position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at position {position}: {message}")]
pub struct SearchError {
    pub position: usize,
    pub message: String,
}

fn error(position: usize, message: impl Into<String>) -> SearchError {
    SearchError {
        position,
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Backticked(String),
    Number(f64),
    Operator(&'static str),
    Dot,
    Comma,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, SearchError> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let (position, character) = chars[index];
        match character {
            _ if character.is_whitespace() => index += 1,
            '.' if !chars
                .get(index + 1)
                .is_some_and(|(_, next)| next.is_ascii_digit()) =>
            {
                tokens.push((position, Token::Dot));
                index += 1;
            }
            ',' => {
                tokens.push((position, Token::Comma));
                index += 1;
            }
            '(' => {
                tokens.push((position, Token::Open));
                index += 1;
            }
            ')' => {
                tokens.push((position, Token::Close));
                index += 1;
            }
            '\'' | '"' | '`' => {
                let quote = character;
                let mut value = String::new();
                index += 1;
                loop {
                    let Some(&(_, next)) = chars.get(index) else {
                        return Err(error(position, format!("unterminated {quote}")));
                    };
                    index += 1;
                    if next == quote {
                        if chars
                            .get(index)
                            .is_some_and(|(_, doubled)| *doubled == quote)
                        {
                            value.push(quote);
                            index += 1;
                            continue;
                        }
                        break;
                    }
                    value.push(next);
                }
                tokens.push((
                    position,
                    if quote == '`' {
                        Token::Backticked(value)
                    } else {
                        Token::Quoted(value)
                    },
                ));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(index + 1).map(|(_, next)| *next);
                let (operator, width) = match (character, next) {
                    ('!', Some('=')) => ("!=", 2),
                    ('<', Some('>')) => ("!=", 2),
                    ('<', Some('=')) => ("<=", 2),
                    ('>', Some('=')) => (">=", 2),
                    ('=', Some('=')) => ("=", 2),
                    ('=', _) => ("=", 1),
                    ('<', _) => ("<", 1),
                    ('>', _) => (">", 1),
                    _ => return Err(error(position, format!("unexpected {character:?}"))),
                };
                tokens.push((position, Token::Operator(operator)));
                index += width;
            }
            _ if character.is_ascii_digit() || character == '-' || character == '.' => {
                let start = index;
                index += 1;
                while chars.get(index).is_some_and(|(_, next)| {
                    next.is_ascii_digit() || matches!(next, '.' | 'e' | 'E')
                }) {
                    index += 1;
                }
                let text: String = chars[start..index].iter().map(|(_, c)| c).collect();
                let number = text
                    .parse()
                    .map_err(|_| error(position, format!("invalid number {text:?}")))?;
                tokens.push((position, Token::Number(number)));
            }
            _ if character.is_alphanumeric() || character == '_' => {
                let start = index;
                while chars
                    .get(index)
                    .is_some_and(|(_, next)| next.is_alphanumeric() || *next == '_')
                {
                    index += 1;
                }
                tokens.push((
                    position,
                    Token::Word(chars[start..index].iter().map(|(_, c)| c).collect()),
                ));
            }
            _ => {
                return Err(error(
                    position,
                    format!("unexpected character {character:?}"),
                ));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    length: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|(_, token)| token)
    }

    fn position(&self) -> usize {
        self.tokens
            .get(self.next)
            .map_or(self.length, |(position, _)| *position)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).map(|(_, token)| token.clone());
        self.next += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(candidate)) if candidate.eq_ignore_ascii_case(word))
        {
            self.next += 1;
            return true;
        }
        false
    }

    /// A key: identifier or quoted segments joined by dots.
    fn key(&mut self) -> Result<(usize, Vec<String>), SearchError> {
        let position = self.position();
        let mut segments = Vec::new();
        loop {
            match self.advance() {
                Some(Token::Word(word)) | Some(Token::Backticked(word)) => segments.push(word),
                Some(Token::Quoted(word)) if !segments.is_empty() => segments.push(word),
                _ => {
                    return Err(error(
                        self.tokens
                            .get(self.next - 1)
                            .map_or(self.length, |(p, _)| *p),
                        "expected a key",
                    ));
                }
            }
            if self.peek() == Some(&Token::Dot) {
                self.next += 1;
                continue;
            }
            return Ok((position, segments));
        }
    }

    fn literal(&mut self) -> Result<Literal, SearchError> {
        let position = self.position();
        match self.advance() {
            Some(Token::Quoted(text)) => Ok(Literal::Text(text)),
            Some(Token::Number(number)) => Ok(Literal::Number(number)),
            _ => Err(error(position, "expected a quoted string or a number")),
        }
    }
}

fn resolve_field(position: usize, segments: &[String]) -> Result<Field, SearchError> {
    let joined = |rest: &[String]| rest.join(".");
    let (prefix, rest) = match segments {
        [only] => ("", std::slice::from_ref(only)),
        [first, rest @ ..] => (first.as_str(), rest),
        [] => return Err(error(position, "expected a key")),
    };
    let attribute = |name: &str| -> Option<Field> {
        Some(match name {
            "request_id" | "trace_id" => Field::TraceId,
            "timestamp" | "timestamp_ms" => Field::Timestamp,
            "execution_time" | "execution_time_ms" => Field::ExecutionTime,
            "end_time" | "end_time_ms" => Field::EndTime,
            "status" | "state" => Field::Status,
            "name" => Field::Name,
            "run_id" => Field::RunId,
            "client_request_id" => Field::ClientRequestId,
            "text" => Field::Text,
            _ => return None,
        })
    };
    let field = match prefix.to_ascii_lowercase().as_str() {
        "" => attribute(&rest[0]),
        "attribute" | "attributes" | "attr" | "run" | "trace" => attribute(&joined(rest)),
        "tag" | "tags" => Some(Field::Tag(joined(rest))),
        "metadata" | "request_metadata" => Some(Field::Metadata(joined(rest))),
        "span" => match rest {
            [name] if name == "name" => Some(Field::SpanName),
            [name] if name == "type" => Some(Field::SpanType),
            [name] if name == "status" => Some(Field::SpanStatus),
            [name] if name == "content" => Some(Field::SpanContent),
            [attributes, key @ ..] if attributes == "attributes" && !key.is_empty() => {
                Some(Field::SpanAttribute(joined(key)))
            }
            _ => None,
        },
        "feedback" if !rest.is_empty() => Some(Field::Feedback(joined(rest))),
        "expectation" if !rest.is_empty() => Some(Field::Expectation(joined(rest))),
        "issue" => {
            return Err(error(
                position,
                format!("{prefix}.* filters are not supported by this server yet"),
            ));
        }
        _ => None,
    };
    field.ok_or_else(|| error(position, format!("unknown key {:?}", segments.join("."))))
}

/// Parses a `filter_string`; an empty one is no condition.
pub fn parse_filter(filter: &str) -> Result<Vec<Condition>, SearchError> {
    let tokens = tokenize(filter)?;
    let mut parser = Parser {
        tokens,
        next: 0,
        length: filter.len(),
    };
    let mut conditions = Vec::new();
    if parser.peek().is_none() {
        return Ok(conditions);
    }
    loop {
        let (position, segments) = parser.key()?;
        let field = resolve_field(position, &segments)?;
        let operator_position = parser.position();
        let comparator = match parser.advance() {
            Some(Token::Operator("=")) => Comparator::Eq,
            Some(Token::Operator("!=")) => Comparator::Ne,
            Some(Token::Operator("<")) => Comparator::Lt,
            Some(Token::Operator("<=")) => Comparator::Le,
            Some(Token::Operator(">")) => Comparator::Gt,
            Some(Token::Operator(">=")) => Comparator::Ge,
            Some(Token::Word(word)) => match word.to_ascii_uppercase().as_str() {
                "LIKE" => Comparator::Like,
                "ILIKE" => Comparator::ILike,
                "RLIKE" => Comparator::RLike,
                "IN" => Comparator::In,
                "NOT" if parser.keyword("IN") => Comparator::NotIn,
                "IS" if parser.keyword("NOT") && parser.keyword("NULL") => Comparator::IsNotNull,
                "IS" if parser.keyword("NULL") => Comparator::IsNull,
                _ => {
                    return Err(error(
                        operator_position,
                        format!("unknown comparator {word:?}"),
                    ));
                }
            },
            _ => return Err(error(operator_position, "expected a comparator")),
        };
        let values = match comparator {
            Comparator::IsNull | Comparator::IsNotNull => Vec::new(),
            Comparator::In | Comparator::NotIn => {
                let open_position = parser.position();
                if parser.advance() != Some(Token::Open) {
                    return Err(error(open_position, "expected ( after IN"));
                }
                let mut values = vec![parser.literal()?];
                while parser.peek() == Some(&Token::Comma) {
                    parser.next += 1;
                    values.push(parser.literal()?);
                }
                let close_position = parser.position();
                if parser.advance() != Some(Token::Close) {
                    return Err(error(close_position, "expected ) to close IN"));
                }
                values
            }
            _ => vec![parser.literal()?],
        };
        if field.is_numeric() {
            if let Some(text) = values
                .iter()
                .find(|value| matches!(value, Literal::Text(_)))
            {
                return Err(error(
                    operator_position,
                    format!("{segments:?} compares with numbers, not {text}"),
                ));
            }
            if matches!(
                comparator,
                Comparator::Like | Comparator::ILike | Comparator::RLike
            ) {
                return Err(error(
                    operator_position,
                    "LIKE, ILIKE and RLIKE compare strings",
                ));
            }
        }
        conditions.push(Condition {
            field,
            comparator,
            values,
        });
        if parser.peek().is_none() {
            return Ok(conditions);
        }
        let position = parser.position();
        if !parser.keyword("AND") {
            return Err(error(
                position,
                "expected AND (conditions are joined with AND only)",
            ));
        }
    }
}

/// Parses `order_by` entries such as `timestamp_ms DESC`.
pub fn parse_order_by(entries: &[String]) -> Result<Vec<OrderBy>, SearchError> {
    entries
        .iter()
        .map(|entry| {
            let tokens = tokenize(entry)?;
            let mut parser = Parser {
                tokens,
                next: 0,
                length: entry.len(),
            };
            let (position, segments) = parser.key()?;
            let field = resolve_field(position, &segments)?;
            if !matches!(
                field,
                Field::Timestamp
                    | Field::ExecutionTime
                    | Field::EndTime
                    | Field::Status
                    | Field::TraceId
                    | Field::Name
                    | Field::RunId
            ) {
                return Err(error(
                    position,
                    format!("cannot order by {:?}", segments.join(".")),
                ));
            }
            let ascending = if parser.keyword("ASC") {
                true
            } else {
                !parser.keyword("DESC")
            };
            if parser.peek().is_some() {
                return Err(error(parser.position(), "expected ASC or DESC at the end"));
            }
            Ok(OrderBy { field, ascending })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_keys_and_comparators_parse() {
        let conditions = parse_filter(
            "status = 'OK' AND timestamp_ms > 1700000000000 AND tags.`mlflow.traceName` LIKE 'pipe%' \
             AND metadata.`mlflow.trace.session` = \"sess-1\" AND span.type IN ('LLM', 'TOOL') \
             AND span.attributes.model = 'gpt' AND trace.text ILIKE '%mlflow%' AND tags.env IS NOT NULL \
             AND attributes.name != 'x' AND request_id NOT IN ('a')",
        )
        .unwrap();
        let fields: Vec<_> = conditions
            .iter()
            .map(|condition| condition.field.clone())
            .collect();
        assert_eq!(
            fields,
            [
                Field::Status,
                Field::Timestamp,
                Field::Tag("mlflow.traceName".into()),
                Field::Metadata("mlflow.trace.session".into()),
                Field::SpanType,
                Field::SpanAttribute("model".into()),
                Field::Text,
                Field::Tag("env".into()),
                Field::Name,
                Field::TraceId,
            ]
        );
        assert_eq!(conditions[1].values, [Literal::Number(1_700_000_000_000.0)]);
        assert_eq!(
            conditions[4].values,
            [Literal::Text("LLM".into()), Literal::Text("TOOL".into())]
        );
        assert_eq!(conditions[7].comparator, Comparator::IsNotNull);
        assert_eq!(conditions[9].comparator, Comparator::NotIn);
    }

    #[test]
    fn errors_name_the_position() {
        let cases = [
            ("status = ", 9, "expected a quoted string"),
            ("status = 'OK' OR name = 'x'", 14, "AND"),
            ("colour = 'red'", 0, "unknown key"),
            ("timestamp_ms > 'yesterday'", 13, "numbers"),
            ("tags.env = 'x", 11, "unterminated"),
            ("status ~ 'OK'", 7, "unexpected"),
            ("status IN 'OK'", 10, "expected ("),
        ];
        for (filter, position, fragment) in cases {
            let error = parse_filter(filter).unwrap_err();
            assert_eq!(error.position, position, "{filter}: {error}");
            assert!(error.message.contains(fragment), "{filter}: {error}");
        }
    }

    #[test]
    fn injection_attempts_stay_values() {
        let conditions = parse_filter("tags.x = 'a''; DROP TABLE traces; --'").unwrap();
        assert_eq!(
            conditions[0].values,
            [Literal::Text("a'; DROP TABLE traces; --".into())]
        );
        assert!(parse_filter("tags.x = 1; DROP TABLE traces").is_err());
    }

    #[test]
    fn random_filters_never_panic() {
        const PIECES: [&str; 24] = [
            "status",
            "tags.",
            "`mlflow.traceName`",
            "metadata.",
            "span.",
            "attributes.",
            "=",
            "!=",
            "<=",
            ">",
            " ",
            "LIKE",
            "IN",
            "(",
            ")",
            ",",
            "'x'",
            "\"y\"",
            "12",
            "-3.5e2",
            "AND",
            "IS NOT NULL",
            "`",
            "'",
        ];
        let mut state = 0x1234_5678_9abc_def0_u64;
        for _ in 0..5000 {
            let mut filter = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            for step in 0..(state % 9) {
                filter.push_str(PIECES[((state >> (step * 5)) % PIECES.len() as u64) as usize]);
            }
            let _ = parse_filter(&filter);
            let _ = parse_order_by(&[filter]);
        }
    }

    #[test]
    fn order_by_reads_direction() {
        let order = parse_order_by(&[
            "timestamp_ms DESC".into(),
            "attributes.execution_time ASC".into(),
            "name".into(),
        ])
        .unwrap();
        assert_eq!(
            order[0],
            OrderBy {
                field: Field::Timestamp,
                ascending: false
            }
        );
        assert_eq!(
            order[1],
            OrderBy {
                field: Field::ExecutionTime,
                ascending: true
            }
        );
        assert!(order[2].ascending);
        assert!(parse_order_by(&["tags.x DESC".into()]).is_err());
    }
}
