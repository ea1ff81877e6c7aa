//! The keyring: shared secrets read from key files, and HMAC with them.
//!
//! Takes key files in the formats DNS operators already have: BIND's
//! `key "NAME" { algorithm hmac-sha256; secret "BASE64"; };` blocks (what
//! `tsig-keygen` prints and `nsupdate -k` and `named` read, several per
//! file, with `#`, `//` and `/* */` comments), and Knot's one-line
//! `hmac-sha256:NAME:BASE64` (what `kdig -k` and `knsupdate -k` read).
//! Produces a [`Keyring`] of named [`Key`]s that sign and verify, and
//! [`generate`]s new keys in BIND's format. A problem is reported as
//! `file:line: message`.
//!
//! It never logs or prints a secret (a [`Key`]'s `Debug` shows its name
//! and algorithm only), and it knows nothing of what the keys protect:
//! signed heartbeats ([`crate::auth`]), DNS UPDATE and zone transfers
//! (TSIG, [`crate::tsig`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use data_encoding::BASE64;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_proto::rr::{Name, TSigner};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Shortest secret accepted, in bytes (`tsig-keygen` makes one as long as
/// the hash: 32 bytes for hmac-sha256).
pub const MIN_SECRET_BYTES: usize = 16;

/// How far a TSIG-signed message's time may be from ours, in seconds
/// (RFC 8945 §10 recommends 300).
pub const TSIG_FUDGE: u16 = 300;

/// Longest key name (a domain name's limit).
pub const MAX_KEY_NAME: usize = 253;

/// An HMAC algorithm, by its name in key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `hmac-sha256` (what `tsig-keygen` makes by default).
    HmacSha256,
    /// `hmac-sha384`.
    HmacSha384,
    /// `hmac-sha512`.
    HmacSha512,
}

impl Algorithm {
    /// Every algorithm, in the order they are offered.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::HmacSha256,
        Algorithm::HmacSha384,
        Algorithm::HmacSha512,
    ];

    /// The name used in key files.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HmacSha256 => "hmac-sha256",
            Algorithm::HmacSha384 => "hmac-sha384",
            Algorithm::HmacSha512 => "hmac-sha512",
        }
    }

    /// The algorithm a key file names (case-insensitive; BIND's trailing
    /// dot and `hmac-sha256.` spellings included).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        let name = name.strip_suffix('.').unwrap_or(name);
        Algorithm::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name))
    }

    /// Length of a tag (and of a generated secret), in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Algorithm::HmacSha256 => 32,
            Algorithm::HmacSha384 => 48,
            Algorithm::HmacSha512 => 64,
        }
    }

    /// The same algorithm as TSIG names it (RFC 8945 §6).
    pub fn tsig(self) -> TsigAlgorithm {
        match self {
            Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
            Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
            Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::HmacSha256 => hmac::HMAC_SHA256,
            Algorithm::HmacSha384 => hmac::HMAC_SHA384,
            Algorithm::HmacSha512 => hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named secret, ready to sign and verify.
pub struct Key {
    name: Arc<str>,
    algorithm: Algorithm,
    hmac: hmac::Key,
    /// The same secret as hickory's TSIG signer (DNS messages: transfers,
    /// UPDATE).
    tsig: TSigner,
    /// Where it was read, `file:line`, for messages.
    origin: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A key named `name` (checked with [`check_key_name`], kept in lower
    /// case) with `secret`.
    ///
    /// # Errors
    /// A message when the name or the secret cannot be used.
    pub fn new(name: &str, algorithm: Algorithm, secret: &[u8]) -> Result<Key, String> {
        let name = check_key_name(name)?;
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the secret of key `{name}` is {} bytes; use at least {MIN_SECRET_BYTES} (`beacon keygen` makes {})",
                secret.len(),
                algorithm.output_len()
            ));
        }
        let signer_name = Name::from_ascii(&name)
            .map_err(|error| format!("key name `{name}` is not a domain name: {error}"))?;
        let tsig = TSigner::new(secret.to_vec(), algorithm.tsig(), signer_name, TSIG_FUDGE)
            .map_err(|error| format!("key `{name}`: {error}"))?;
        Ok(Key {
            name: name.into(),
            algorithm,
            hmac: hmac::Key::new(algorithm.ring(), secret),
            tsig,
            origin: String::new(),
        })
    }

    /// The key's name, in lower case.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Where it was read (`file:line`), empty for keys made in code.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The key as a TSIG signer of DNS messages.
    pub fn tsig(&self) -> &TSigner {
        &self.tsig
    }

    /// The HMAC of `message`.
    pub fn sign(&self, message: &[u8]) -> hmac::Tag {
        hmac::sign(&self.hmac, message)
    }

    /// True when `tag` is the whole HMAC of `message` (compared in
    /// constant time).
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.hmac, message, tag).is_ok()
    }
}

/// A key name: a domain name's characters (letters, digits, `-`, `_`,
/// `.`), 1 to [`MAX_KEY_NAME`] long, case-insensitive (returned in lower
/// case, without a trailing dot).
///
/// # Errors
/// A message saying what is wrong.
pub fn check_key_name(name: &str) -> Result<String, String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > MAX_KEY_NAME {
        return Err(format!(
            "key name `{name}` must be 1 to {MAX_KEY_NAME} characters"
        ));
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "key name `{name}` may hold only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(trimmed.to_ascii_lowercase())
}

/// Why key files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read.
    #[error("{}: cannot read the key file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The file's text is not a key file, or a key in it is unusable.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, and what would be accepted.
        message: String,
    },
    /// The file holds no key at all.
    #[error("{}: holds no key (expected `key \"NAME\" {{ algorithm hmac-sha256; secret \"BASE64\"; }};`, as `beacon keygen NAME` prints)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Named keys, read from key files.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    keys: HashMap<Arc<str>, Arc<Key>>,
    files: Vec<PathBuf>,
}

impl Keyring {
    /// The keys in `files` (each must hold at least one; a name may appear
    /// once across all of them).
    ///
    /// # Errors
    /// The first [`KeyError`] found.
    pub fn load(files: &[PathBuf]) -> Result<Keyring, KeyError> {
        let mut ring = Keyring {
            keys: HashMap::new(),
            files: files.to_vec(),
        };
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                path: path.clone(),
                source,
            })?;
            let keys = parse(&text, path)?;
            if keys.is_empty() {
                return Err(KeyError::Empty { path: path.clone() });
            }
            for key in keys {
                if let Some(earlier) = ring.keys.get(key.name()) {
                    let line = key
                        .origin
                        .rsplit(':')
                        .next()
                        .and_then(|l| l.parse().ok())
                        .unwrap_or(1);
                    return Err(KeyError::Syntax {
                        path: path.clone(),
                        line,
                        message: format!(
                            "key `{}` is already defined at {}",
                            key.name(),
                            earlier.origin
                        ),
                    });
                }
                ring.keys.insert(key.name().clone(), Arc::new(key));
            }
        }
        Ok(ring)
    }

    /// The same files read again (for SIGHUP).
    ///
    /// # Errors
    /// The first [`KeyError`] found; the caller keeps the old keyring.
    pub fn reload(&self) -> Result<Keyring, KeyError> {
        Keyring::load(&self.files)
    }

    /// A keyring of the given keys, read from no file.
    pub fn from_keys(keys: impl IntoIterator<Item = Key>) -> Keyring {
        Keyring {
            keys: keys
                .into_iter()
                .map(|k| (k.name().clone(), Arc::new(k)))
                .collect(),
            files: Vec::new(),
        }
    }

    /// The key named `name` (compared without regard to case).
    pub fn get(&self, name: &str) -> Option<&Arc<Key>> {
        match self.keys.get(name) {
            Some(key) => Some(key),
            None if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.keys.get(name.to_ascii_lowercase().as_str())
            }
            None => None,
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.keys.keys().map(AsRef::as_ref).collect();
        names.sort_unstable();
        names
    }

    /// The files the keys were read from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

/// A token of a key file, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Open,
    Close,
    End,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Word(w) => format!("`{w}`"),
        Token::Quoted(q) => format!("\"{q}\""),
        Token::Open => "`{`".into(),
        Token::Close => "`}`".into(),
        Token::End => "`;`".into(),
    }
}

/// Splits a key file into tokens, dropping comments.
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, (usize, String)> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'/') => while chars.next_if(|&c| c != '\n').is_some() {},
            '/' if chars.peek() == Some(&'*') => {
                let start = line;
                chars.next();
                let mut previous = ' ';
                loop {
                    match chars.next() {
                        Some('/') if previous == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            previous = c;
                        }
                        None => return Err((start, "comment `/*` is never closed".into())),
                    }
                }
            }
            '{' => tokens.push((Token::Open, line)),
            '}' => tokens.push((Token::Close, line)),
            ';' => tokens.push((Token::End, line)),
            '"' => {
                let start = line;
                let mut quoted = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\n') | None => {
                            return Err((start, "quoted string is never closed".into()));
                        }
                        Some(c) => quoted.push(c),
                    }
                }
                tokens.push((Token::Quoted(quoted), start));
            }
            c => {
                let mut word = String::from(c);
                while let Some(c) =
                    chars.next_if(|&c| !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"'))
                {
                    word.push(c);
                }
                tokens.push((Token::Word(word), line));
            }
        }
    }
    Ok(tokens)
}

/// Decodes a base64 secret (whitespace inside is allowed, as BIND allows it).
fn decode_secret(text: &str) -> Result<Vec<u8>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    BASE64
        .decode(compact.as_bytes())
        .map_err(|e| format!("secret is not base64: {e}"))
}

/// The keys in one key file's `text`; `path` is for messages.
///
/// # Errors
/// [`KeyError::Syntax`] at the first problem, with its line.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Key>, KeyError> {
    let fail = |line: usize, message: String| KeyError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };
    let tokens = tokenize(text).map_err(|(line, message)| fail(line, message))?;
    let mut keys = Vec::new();
    let mut at = 0;
    let last_line = tokens.last().map_or(1, |(_, line)| *line);
    let next = |at: &mut usize| -> Option<(Token, usize)> {
        let token = tokens.get(*at).cloned();
        *at += 1;
        token
    };
    while let Some((token, line)) = next(&mut at) {
        match token {
            Token::Word(word) if word.eq_ignore_ascii_case("key") => {
                let key = parse_block(&mut || next(&mut at), line, last_line)
                    .map_err(|(line, message)| fail(line, message))?;
                keys.push(Key {
                    origin: format!("{}:{line}", path.display()),
                    ..key
                });
            }
            Token::Word(word) if word.contains(':') => {
                let key = parse_knot_line(&word).map_err(|message| fail(line, message))?;
                keys.push(Key {
                    origin: format!("{}:{line}", path.display()),
                    ..key
                });
            }
            Token::End => {}
            other => {
                return Err(fail(
                    line,
                    format!(
                        "expected `key \"NAME\" {{ ... }};` or `hmac-sha256:NAME:SECRET`, found {}",
                        describe(&other)
                    ),
                ));
            }
        }
    }
    Ok(keys)
}

/// Knot's one-line form, `ALGORITHM:NAME:SECRET` (the algorithm may be
/// left out, meaning hmac-sha256 as in `kdig -y`).
fn parse_knot_line(word: &str) -> Result<Key, String> {
    let parts: Vec<&str> = word.split(':').collect();
    let (algorithm, name, secret) = match parts.as_slice() {
        [algorithm, name, secret] => (*algorithm, *name, *secret),
        [name, secret] if Algorithm::from_name(name).is_none() => ("hmac-sha256", *name, *secret),
        _ => {
            return Err(format!(
                "`{word}` is not of the form hmac-sha256:NAME:SECRET"
            ));
        }
    };
    let algorithm = Algorithm::from_name(algorithm).ok_or_else(|| unsupported(algorithm))?;
    Key::new(name, algorithm, &decode_secret(secret)?)
}

fn unsupported(algorithm: &str) -> String {
    format!(
        "algorithm `{algorithm}` is not supported (use hmac-sha256, hmac-sha384 or hmac-sha512)"
    )
}

/// The rest of a `key NAME { ... };` block, after `key`.
fn parse_block(
    next: &mut dyn FnMut() -> Option<(Token, usize)>,
    key_line: usize,
    last_line: usize,
) -> Result<Key, (usize, String)> {
    let eof = |what: &str| {
        (
            last_line,
            format!("the file ends inside a key block: {what}"),
        )
    };
    let (name, line) = match next().ok_or_else(|| eof("expected the key's name"))? {
        (Token::Word(name) | Token::Quoted(name), line) => (name, line),
        (other, line) => {
            return Err((
                line,
                format!(
                    "expected the key's name after `key`, found {}",
                    describe(&other)
                ),
            ));
        }
    };
    let name = check_key_name(&name).map_err(|e| (line, e))?;
    match next().ok_or_else(|| eof("expected `{`"))? {
        (Token::Open, _) => {}
        (other, line) => {
            return Err((
                line,
                format!(
                    "expected `{{` after the key's name, found {}",
                    describe(&other)
                ),
            ));
        }
    }
    let mut algorithm = None;
    let mut secret = None;
    loop {
        let (token, line) = next().ok_or_else(|| eof("expected `};`"))?;
        let statement = match token {
            Token::Close => break,
            Token::End => continue,
            Token::Word(word) => word.to_ascii_lowercase(),
            other => {
                return Err((
                    line,
                    format!(
                        "expected `algorithm`, `secret` or `}}`, found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        let value = match next().ok_or_else(|| eof("expected a value"))? {
            (Token::Word(v) | Token::Quoted(v), _) => v,
            (other, line) => {
                return Err((
                    line,
                    format!(
                        "expected a value after `{statement}`, found {}",
                        describe(&other)
                    ),
                ));
            }
        };
        match next().ok_or_else(|| eof("expected `;`"))? {
            (Token::End, _) => {}
            (other, line) => {
                return Err((
                    line,
                    format!(
                        "expected `;` after `{statement} {value}`, found {}",
                        describe(&other)
                    ),
                ));
            }
        }
        match statement.as_str() {
            "algorithm" if algorithm.is_some() => {
                return Err((line, format!("key `{name}` has two `algorithm` lines")));
            }
            "algorithm" => {
                algorithm =
                    Some(Algorithm::from_name(&value).ok_or_else(|| (line, unsupported(&value)))?);
            }
            "secret" if secret.is_some() => {
                return Err((line, format!("key `{name}` has two `secret` lines")));
            }
            "secret" => secret = Some((decode_secret(&value).map_err(|e| (line, e))?, line)),
            other => {
                return Err((
                    line,
                    format!(
                        "unknown statement `{other}` in key `{name}` (expected `algorithm` or `secret`)"
                    ),
                ));
            }
        }
    }
    if let Some((token, line)) = next()
        && token != Token::End
    {
        return Err((
            line,
            format!(
                "expected `;` after the key block's `}}`, found {}",
                describe(&token)
            ),
        ));
    }
    let algorithm =
        algorithm.ok_or_else(|| (key_line, format!("key `{name}` has no `algorithm` line")))?;
    let (secret, secret_line) =
        secret.ok_or_else(|| (key_line, format!("key `{name}` has no `secret` line")))?;
    Key::new(&name, algorithm, &secret).map_err(|e| (secret_line, e))
}

/// A new random key named `name`, as a BIND key block (`tsig-keygen`'s
/// output format: what `--keys`, `nsupdate -k` and `named` read).
///
/// # Errors
/// A message when the name is not a key name or the system's random
/// source fails.
pub fn generate(name: &str, algorithm: Algorithm) -> Result<String, String> {
    let name = check_key_name(name)?;
    let mut secret = vec![0u8; algorithm.output_len()];
    SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| "the system's random source failed".to_string())?;
    Ok(format!(
        "key \"{name}\" {{\n\talgorithm {algorithm};\n\tsecret \"{}\";\n}};\n",
        BASE64.encode(&secret)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

    fn parse_str(text: &str) -> Result<Vec<Key>, String> {
        parse(text, Path::new("k.key")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_bind_blocks_and_knot_lines() {
        let text = format!(
            "# made by tsig-keygen\nkey \"Web-Team\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{SECRET}\";\n}};\n\
             /* a second\n key */ key ops. {{ secret \"{SECRET}\"; algorithm HMAC-SHA512; }};\n\
             // Knot's form\nhmac-sha384:knot-key:{SECRET}\n"
        );
        let keys = parse_str(&text).expect("valid");
        let names: Vec<_> = keys
            .iter()
            .map(|k| (k.name().to_string(), k.algorithm()))
            .collect();
        assert_eq!(
            names,
            [
                ("web-team".to_string(), Algorithm::HmacSha256),
                ("ops".to_string(), Algorithm::HmacSha512),
                ("knot-key".to_string(), Algorithm::HmacSha384),
            ]
        );
        assert_eq!(keys[1].origin(), "k.key:7");
        assert!(!format!("{:?}", keys[0]).contains(SECRET));
    }

    #[test]
    fn reports_problems_with_their_line() {
        let cases = [
            (
                "key a { algorithm hmac-md5; secret \"x\"; };",
                "k.key:1: algorithm `hmac-md5` is not supported",
            ),
            (
                "\n\nkey a { algorithm hmac-sha256; secret \"!!\"; };",
                "k.key:3: secret is not base64",
            ),
            (
                "key a {\nalgorithm hmac-sha256;\n};",
                "k.key:1: key `a` has no `secret` line",
            ),
            (
                "key a {\nalgorithm hmac-sha256;\nsecret \"c2hvcnQ=\";\n};",
                "k.key:3: the secret of key `a` is 5 bytes",
            ),
            (
                "key a { algorithm hmac-sha256 secret \"x\"; };",
                "k.key:1: expected `;` after `algorithm hmac-sha256`",
            ),
            (
                "key a { algorithm hmac-sha256; secret \"x",
                "k.key:1: quoted string is never closed",
            ),
            ("key \"a b\" { };", "k.key:1: key name `a b` may hold only"),
            (
                "\nkey a { algorithm hmac-sha256;",
                "k.key:2: the file ends inside a key block",
            ),
            ("zone a { };", "k.key:1: expected `key \"NAME\""),
            (
                "key a { colour red; };",
                "k.key:1: unknown statement `colour`",
            ),
            (
                "hmac-sha256:only",
                "k.key:1: `hmac-sha256:only` is not of the form",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_str(text).expect_err(text);
            assert!(
                error.starts_with(expected),
                "{text:?}: {error:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn sign_and_verify_agree_and_generated_keys_parse() {
        let text = generate("gen", Algorithm::HmacSha256).expect("generate");
        assert!(
            text.starts_with("key \"gen\" {\n\talgorithm hmac-sha256;\n\tsecret \""),
            "{text}"
        );
        let keys = parse_str(&text).expect("generated key parses");
        let key = &keys[0];
        let tag = key.sign(b"hello");
        assert_eq!(tag.as_ref().len(), 32);
        assert!(key.verify(b"hello", tag.as_ref()));
        assert!(!key.verify(b"hellO", tag.as_ref()));
        assert!(!key.verify(b"hello", &tag.as_ref()[..31]));
        assert_ne!(generate("gen", Algorithm::HmacSha256), Ok(text));
    }

    #[test]
    fn a_name_is_defined_once_across_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let one = dir.path().join("one.key");
        let two = dir.path().join("two.key");
        std::fs::write(
            &one,
            format!("key a {{ algorithm hmac-sha256; secret \"{SECRET}\"; }};\n"),
        )
        .expect("write");
        std::fs::write(&two, format!("\nhmac-sha256:A:{SECRET}\n")).expect("write");
        let error = Keyring::load(&[one.clone(), two.clone()])
            .expect_err("duplicate")
            .to_string();
        assert!(
            error.ends_with(&format!(
                "two.key:2: key `a` is already defined at {}:1",
                one.display()
            )),
            "{error}"
        );
        std::fs::write(&two, "# nothing\n").expect("write");
        let error = Keyring::load(&[one.clone(), two])
            .expect_err("empty")
            .to_string();
        assert!(error.contains("holds no key"), "{error}");
        let ring = Keyring::load(&[one]).expect("load");
        assert!(ring.get("A").is_some() && ring.get("a").is_some() && ring.get("b").is_none());
    }
}
