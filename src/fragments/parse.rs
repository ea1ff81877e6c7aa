//! Parsing one fragment: RFC 1035 master-file text to records with line numbers.
//!
//! Takes the text of one file and the served zone; produces every record
//! with the line it starts on, and every problem with its line. The wire
//! format of each record is hickory-proto's parser's business; this module
//! splits the file into entries first (tracking parentheses, quotes and
//! comments), handles `$ORIGIN` and `$TTL` itself, and hands hickory one
//! entry at a time, so every error and every record has a line number
//! (hickory's parser reports none). It never reads the disk.
//!
//! Semantics follow RFC 1035 §5.1 and RFC 2308: `$ORIGIN` may be relative
//! (it is appended to the current origin); a blank owner repeats the previous
//! one; a record without a TTL takes `$TTL`, or else the last explicit TTL,
//! or else [`FALLBACK_TTL`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::LazyLock;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::{Parser, parse_ttl};

use super::compact::{Compact, NameKey, PassThroughBuild};

/// TTL of records in a file that gives none at all (no `$TTL`, no explicit TTL).
pub const FALLBACK_TTL: u32 = 3600;

/// A record, kept compactly, and the line its entry starts on (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    /// The record, owner absolute.
    pub record: Compact,
    /// Line of the entry it came from.
    pub line: u32,
}

/// What one file holds: its records, and what is wrong with it.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Records that parsed and passed the per-record checks.
    pub records: Vec<LineRecord>,
    /// Problems as (line, message); any problem rejects the whole file.
    pub problems: Vec<(u32, String)>,
    /// With a cache: owner names of entries that are new or gone since the
    /// cached version, the only names whose records can differ (without
    /// one, empty: every name may have changed).
    pub changed_names: Vec<NameKey>,
}

/// The entries of the last good version of a file: a keyed hash of the
/// exact entry (its text, origin and default TTL) → the range of its
/// records in that version's list. An edit to one line of a big file
/// re-parses that line only; the others' records are copied over. Only
/// entries that passed every check are kept.
pub type EntryCache = HashMap<u64, (u32, u32), PassThroughBuild>;

/// Seeds the entry hashes (per process).
static ENTRY_HASHER: LazyLock<ahash::RandomState> = LazyLock::new(ahash::RandomState::new);

/// One logical entry: a directive or a record, possibly spanning lines in
/// parentheses, with comments removed.
struct Entry<'t> {
    line: u32,
    text: Cow<'t, str>,
}

/// True when a line needs the careful scan: comments, parentheses, quotes
/// or escapes. Most lines of a big file need none.
fn plain(line: &str) -> bool {
    !line
        .bytes()
        .any(|b| matches!(b, b';' | b'(' | b')' | b'"' | b'\\'))
}

/// Splits master-file text into entries.
fn entries<'t>(text: &'t str, problems: &mut Vec<(u32, String)>) -> Vec<Entry<'t>> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0u32;
    let mut depth = 0u32;
    let mut paren_line = 0u32;
    for (index, raw) in text.lines().enumerate() {
        let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        if depth == 0 && plain(raw) {
            if !raw.trim().is_empty() {
                out.push(Entry {
                    line: line_no,
                    text: Cow::Borrowed(raw),
                });
            }
            continue;
        }
        let mut in_quote = false;
        let mut escaped = false;
        let mut cleaned = String::with_capacity(raw.len());
        for c in raw.chars() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = !in_quote;
            } else if !in_quote {
                match c {
                    ';' => break,
                    '(' => {
                        if depth == 0 {
                            paren_line = line_no;
                        }
                        depth += 1;
                    }
                    ')' => {
                        if depth == 0 {
                            problems.push((line_no, "`)` without a matching `(`".into()));
                            continue;
                        }
                        depth -= 1;
                    }
                    _ => {}
                }
            }
            cleaned.push(c);
        }
        if in_quote {
            problems.push((line_no, "unterminated quoted string".into()));
        }
        if current.is_empty() {
            if cleaned.trim().is_empty() {
                continue;
            }
            start = line_no;
        } else {
            current.push('\n');
        }
        current.push_str(&cleaned);
        if depth == 0 {
            out.push(Entry {
                line: start,
                text: Cow::Owned(std::mem::take(&mut current)),
            });
        }
    }
    if depth > 0 {
        problems.push((paren_line, "`(` is never closed".into()));
    }
    out
}

/// Resolves a possibly relative name against `origin` (`@` is the origin).
fn absolute(text: &str, origin: &Name) -> Result<Name, String> {
    if text == "@" {
        return Ok(origin.clone());
    }
    let name = Name::from_ascii(text).map_err(|e| format!("`{text}` is not a domain name: {e}"))?;
    if name.is_fqdn() {
        Ok(name)
    } else {
        name.append_domain(origin)
            .map_err(|e| format!("`{text}` is too long once the origin is added: {e}"))
    }
}

/// True when `token` is a TTL (`300`, `1h30m`): it starts with a digit.
fn is_ttl(token: &str) -> bool {
    token.starts_with(|c: char| c.is_ascii_digit())
}

/// Parses one fragment of `zone`, without a cache.
pub fn parse(text: &str, zone: &Name) -> Parsed {
    parse_cached(text, zone, None).0
}

/// Types read without hickory's zone-file parser (the records of most
/// fragments): their text is plain, and names in their data are fixed up
/// against the origin here.
fn simple_type(rtype: RecordType) -> bool {
    matches!(
        rtype,
        RecordType::A
            | RecordType::AAAA
            | RecordType::CNAME
            | RecordType::NS
            | RecordType::PTR
            | RecordType::MX
            | RecordType::SRV
            | RecordType::TXT
            | RecordType::CAA
    )
}

/// A name from record data made absolute against `origin`.
fn fix(name: Name, origin: &Name) -> Option<Name> {
    if name.is_fqdn() {
        Some(name)
    } else {
        name.append_domain(origin).ok()
    }
}

/// Reads a record of a common type directly (owner already absolute):
/// `[ttl] [IN] type data...`. `None` when the entry needs the full parser
/// (another class or type, quotes, `@` in the data); an error message
/// when it is wrong.
fn parse_simple(
    owner: &Name,
    default_ttl: u32,
    text: &str,
    origin: &Name,
) -> Option<Result<Record, String>> {
    if text.contains(['"', '@', '\\', '(', ')']) {
        return None;
    }
    let mut tokens = text.split_whitespace();
    let mut ttl = default_ttl;
    let mut token = tokens.next()?;
    for _ in 0..2 {
        if is_ttl(token) {
            ttl = parse_ttl(token).ok()?;
            token = tokens.next()?;
        } else if token.eq_ignore_ascii_case("IN") {
            token = tokens.next()?;
        }
    }
    let rtype = RecordType::from_str(&token.to_ascii_uppercase()).ok()?;
    if !simple_type(rtype) {
        return None;
    }
    // Where the type token ends in `text` (tokens are slices of it).
    let type_end = token.as_ptr() as usize - text.as_ptr() as usize + token.len();
    let rest = text.get(type_end..)?.trim();
    let data = match RData::try_from_str(rtype, rest) {
        Ok(data) => data,
        Err(e) => return Some(Err(e.to_string())),
    };
    let data = match data {
        RData::CNAME(mut target) => {
            target.0 = fix(target.0, origin)?;
            RData::CNAME(target)
        }
        RData::NS(mut target) => {
            target.0 = fix(target.0, origin)?;
            RData::NS(target)
        }
        RData::PTR(mut target) => {
            target.0 = fix(target.0, origin)?;
            RData::PTR(target)
        }
        RData::MX(mx) => RData::MX(hickory_proto::rr::rdata::MX::new(
            mx.preference,
            fix(mx.exchange, origin)?,
        )),
        RData::SRV(srv) => RData::SRV(hickory_proto::rr::rdata::SRV::new(
            srv.priority,
            srv.weight,
            srv.port,
            fix(srv.target, origin)?,
        )),
        other => other,
    };
    Some(Ok(Record::from_rdata(owner.clone(), ttl, data)))
}

/// Parses one fragment of `zone`. With `previous` (the cache and the
/// records of the file's last good version), entries seen before are not
/// parsed again; returns the cache for the next version.
pub fn parse_cached(
    text: &str,
    zone: &Name,
    previous: Option<(&EntryCache, &[LineRecord])>,
) -> (Parsed, EntryCache) {
    let mut parsed = Parsed::default();
    let mut cache = EntryCache::default();
    // Which records of the previous version were reused.
    let mut reused = previous.map(|(_, records)| vec![false; records.len()]);
    let mut origin = zone.clone();
    let mut origin_text: Rc<str> = Rc::from(origin.to_string());
    let mut dollar_ttl: Option<u32> = None;
    let mut last_ttl: Option<u32> = None;
    // The previous owner as written, with the origin then in force, for
    // entries with a blank owner.
    let mut owner: Option<(&str, Rc<str>, Name)> = None;
    let entries_text = entries(text, &mut parsed.problems);
    parsed.records.reserve(entries_text.len());
    for entry in &entries_text {
        let line = entry.line;
        let starts_blank = entry.text.starts_with([' ', '\t']);
        let body = entry.text.trim();
        let (first, rest) = body.split_once([' ', '\t', '\n']).unwrap_or((body, ""));
        let rest = rest.trim_start();
        if !starts_blank && first.starts_with('$') {
            if first.eq_ignore_ascii_case("$ORIGIN") {
                match absolute(rest.trim(), &origin) {
                    Ok(name) => {
                        origin = name;
                        origin_text = Rc::from(origin.to_string());
                    }
                    Err(e) => parsed.problems.push((line, format!("$ORIGIN: {e}"))),
                }
            } else if first.eq_ignore_ascii_case("$TTL") {
                match parse_ttl(rest.trim()) {
                    Ok(ttl) => dollar_ttl = Some(ttl),
                    Err(e) => parsed.problems.push((line, format!("$TTL: {e}"))),
                }
            } else if first.eq_ignore_ascii_case("$INCLUDE") {
                parsed.problems.push((
                    line,
                    "$INCLUDE is not supported in fragments: every *.zone file is loaded on its own, so put the records in a file of their own".into(),
                ));
            } else {
                parsed
                    .problems
                    .push((line, format!("unknown directive `{first}`")));
            }
            continue;
        }
        let ((owner_token, owner_origin, owner_name), record_text) = if starts_blank {
            match &owner {
                Some(previous) => (previous.clone(), body),
                None => {
                    parsed.problems.push((
                        line,
                        "record has no owner name and none came before it".into(),
                    ));
                    continue;
                }
            }
        } else {
            match absolute(first, &origin) {
                Ok(name) => ((first, origin_text.clone(), name), rest),
                Err(e) => {
                    parsed.problems.push((line, e));
                    continue;
                }
            }
        };
        owner = Some((owner_token, owner_origin.clone(), owner_name.clone()));

        // An explicit TTL becomes the default for later records without one
        // (RFC 1035), unless $TTL is set (RFC 2308).
        let explicit_ttl = record_text
            .split_whitespace()
            .take(2)
            .find(|t| is_ttl(t))
            .and_then(|t| parse_ttl(t).ok());
        let default_ttl = dollar_ttl.or(last_ttl).unwrap_or(FALLBACK_TTL);
        if explicit_ttl.is_some() {
            last_ttl = explicit_ttl;
        }

        // What the records of this entry depend on: its text, the origin
        // its names are relative to, the owner's, and the default TTL.
        let entry_key = ENTRY_HASHER.hash_one((
            &*origin_text,
            &*owner_origin,
            owner_token,
            default_ttl,
            record_text,
        ));
        if let (Some((old_cache, old_records)), Some(reused)) = (previous, reused.as_mut())
            && let Some(&(start, count)) = old_cache.get(&entry_key)
        {
            let range = start as usize..(start + count) as usize;
            if let Some(records) = old_records.get(range.clone()) {
                // Seen before, and it passed the checks then: the zone is the same.
                let at = u32::try_from(parsed.records.len()).unwrap_or(u32::MAX);
                cache.insert(entry_key, (at, count));
                parsed.records.extend(records.iter().map(|r| LineRecord {
                    record: r.record.clone(),
                    line,
                }));
                reused[range].iter_mut().for_each(|used| *used = true);
                continue;
            }
        }

        let records: Vec<Record> =
            match parse_simple(&owner_name, default_ttl, record_text, &origin) {
                Some(Ok(record)) => vec![record],
                Some(Err(e)) => {
                    parsed.problems.push((line, e));
                    continue;
                }
                None => match parse_with_hickory(
                    &origin_text,
                    default_ttl,
                    owner_token,
                    &owner_origin,
                    record_text,
                ) {
                    Ok(records) => records,
                    Err(e) => {
                        parsed.problems.push((line, e));
                        continue;
                    }
                },
            };
        if previous.is_some() {
            parsed
                .changed_names
                .extend(records.iter().map(|r| NameKey::of(&(&r.name).into())));
        }
        let at = u32::try_from(parsed.records.len()).unwrap_or(u32::MAX);
        let mut all_good = true;
        for record in &records {
            match check(record, zone).and_then(|()| {
                Compact::new(record).ok_or_else(|| format!("{record} cannot be encoded"))
            }) {
                Ok(compact) => parsed.records.push(LineRecord {
                    record: compact,
                    line,
                }),
                Err(e) => {
                    all_good = false;
                    parsed.problems.push((line, e));
                }
            }
        }
        if all_good {
            let count = u32::try_from(records.len()).unwrap_or(0);
            cache.insert(entry_key, (at, count));
        }
    }
    // Entries of the previous version that are gone.
    if let (Some((_, old_records)), Some(reused)) = (previous, reused) {
        parsed.changed_names.extend(
            old_records
                .iter()
                .zip(reused)
                .filter(|(_, used)| !used)
                .map(|(r, _)| NameKey::from_wire(r.record.owner())),
        );
    }
    (parsed, cache)
}

/// Parses one entry with hickory's zone-file parser, handing it the
/// origin, default TTL and absolute owner as a tiny zone file of its own.
fn parse_with_hickory(
    origin_text: &str,
    default_ttl: u32,
    owner_token: &str,
    owner_origin: &str,
    record_text: &str,
) -> Result<Vec<Record>, String> {
    let mut ttl_text = itoa::Buffer::new();
    let ttl_text = ttl_text.format(default_ttl);
    // The owner made absolute by hand (text, not Name, to stay cheap).
    let owner_parts: [&str; 3] = match owner_token {
        "@" => [owner_origin, "", ""],
        t if t.ends_with('.') => [t, "", ""],
        t => [t, ".", owner_origin],
    };
    let mut one =
        String::with_capacity(32 + origin_text.len() + 2 * owner_origin.len() + record_text.len());
    for part in ["$ORIGIN ", origin_text, "\n$TTL ", ttl_text, "\n"] {
        one.push_str(part);
    }
    for part in owner_parts {
        one.push_str(part);
    }
    for part in [" ", record_text, "\n"] {
        one.push_str(part);
    }
    match Parser::new(one.as_str(), None, None).parse() {
        Ok((_, sets)) => Ok(sets
            .into_values()
            .flat_map(|set| set.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect()),
        Err(e) => Err(e.to_string()),
    }
}

/// Per-record rules that need no other record.
fn check(record: &Record, zone: &Name) -> Result<(), String> {
    if record.dns_class != DNSClass::IN {
        return Err(format!("class {} is not served; only IN", record.dns_class));
    }
    if record.record_type() == RecordType::SOA {
        return Err(
            "SOA records are not allowed in fragments: the server owns the zone's SOA".into(),
        );
    }
    if !zone.zone_of(&record.name) {
        return Err(format!("{} is outside the served zone {zone}", record.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Name {
        Name::from_ascii("svc.internal.").expect("zone")
    }

    fn text(parsed: &Parsed) -> Vec<String> {
        parsed
            .records
            .iter()
            .map(|r| format!("{} {}", r.line, r.record.record().expect("decodes")))
            .collect()
    }

    #[test]
    fn master_file_syntax() {
        let parsed = parse(
            "; a comment\n\
             $TTL 60\n\
             db      IN A 10.1.0.1 ; trailing comment\n\
             \x20       IN A 10.1.0.2\n\
             _db._tcp 30 IN SRV ( 0 5\n\
             \x20   5432 db.svc.internal. )\n\
             $ORIGIN ext\n\
             alias CNAME db.svc.internal.\n\
             $ORIGIN svc.internal.\n\
             @ IN TXT \"v=1; x=(y)\" \"two\"\n\
             www.svc.internal. 1h MX 10 db\n",
            &zone(),
        );
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(
            text(&parsed),
            [
                "3 db.svc.internal. 60 IN A 10.1.0.1",
                "4 db.svc.internal. 60 IN A 10.1.0.2",
                "5 _db._tcp.svc.internal. 30 IN SRV 0 5 5432 db.svc.internal.",
                "8 alias.ext.svc.internal. 60 IN CNAME db.svc.internal.",
                // hickory displays the two strings joined
                "10 svc.internal. 60 IN TXT v=1; x=(y)two",
                "11 www.svc.internal. 3600 IN MX 10 db.svc.internal.",
            ]
        );
    }

    #[test]
    fn ttl_defaults_follow_rfc_1035_then_2308() {
        let parsed = parse(
            "a 120 A 10.0.0.1\nb A 10.0.0.2\n$TTL 30\nc A 10.0.0.3\nd 5 A 10.0.0.4\ne A 10.0.0.5\n",
            &zone(),
        );
        let ttl = |r: &LineRecord| r.record.record().expect("decodes").ttl;
        let ttls: Vec<u32> = parsed.records.iter().map(ttl).collect();
        assert_eq!(ttls, [120, 120, 30, 5, 30]);
        let none = parse("a A 10.0.0.1\n", &zone());
        assert_eq!(ttl(&none.records[0]), FALLBACK_TTL);
    }

    #[test]
    fn problems_have_line_numbers() {
        let parsed = parse(
            "ok A 10.0.0.1\n\
             bad A 10.0.0.300\n\
             \n\
             other.example. A 10.0.0.2\n\
             @ SOA ns hostmaster 1 2 3 4 5\n\
             x FOO bar\n\
             y CH A 10.0.0.3\n\
             $INCLUDE other.zone\n\
             z TXT (\n",
            &zone(),
        );
        let lines: Vec<u32> = parsed.problems.iter().map(|p| p.0).collect();
        assert_eq!(lines, [9, 2, 4, 5, 6, 7, 8], "{:?}", parsed.problems);
        assert!(parsed.problems[2].1.contains("outside the served zone"));
        assert!(parsed.problems[3].1.contains("SOA"));
        assert_eq!(parsed.records.len(), 1);
    }
}
