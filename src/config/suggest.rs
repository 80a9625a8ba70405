//! What to say about a key nobody knows: the valid key it was probably meant to be, or where it
//! belongs, or (when nothing is close) the keys that are valid there.

/// Damerau-Levenshtein distance (the "optimal string alignment" kind) between two strings, in
/// characters: how many insertions, deletions, substitutions and swaps of two neighbours turn
/// one into the other.
pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the table: the one before the previous, the previous, the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = previous[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitution.min(previous[j] + 1).min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// A key as compared: case, and `-` or a space for `_`, make no difference.
fn normal(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Whether `typed` is close enough to `valid` to be a slip for it: at most 2 edits, or a third of
/// the length, and not a rewrite of all that was typed.
fn close(typed: &str, valid: &str) -> Option<usize> {
    let (typed, valid) = (normal(typed), normal(valid));
    let d = distance(&typed, &valid);
    let length = typed.chars().count().max(valid.chars().count());
    (d < typed.chars().count() && (d <= 2 || 3 * d <= length)).then_some(d)
}

/// Whether `typed` is the end of `valid` with a word left out (`topic` for `kafka_topic`,
/// `brokers` for `kafka_broker`).
fn shortened(typed: &str, valid: &str) -> bool {
    let (typed, valid) = (normal(typed), normal(valid));
    if typed.chars().count() < 3 {
        return false;
    }
    let words: Vec<&str> = valid.split('_').collect();
    (1..words.len()).any(|skip| {
        let tail = words[skip..].join("_");
        let slack = usize::from(tail.chars().count() >= 4);
        distance(&typed, &tail) <= slack
    })
}

/// The keys of `valid` that `typed` was probably meant to be, closest first: those at the least
/// distance, else (when none is close) those it is a shortened form of. Empty when none is, or
/// when more than three are (a guess among so many helps nobody).
pub(super) fn meant<'k>(typed: &str, valid: &[&'k str]) -> Vec<&'k str> {
    let near: Vec<(usize, &str)> = valid
        .iter()
        .filter_map(|v| close(typed, v).map(|d| (d, *v)))
        .collect();
    let found: Vec<&str> = match near.iter().map(|(d, _)| *d).min() {
        Some(least) => near
            .into_iter()
            .filter(|(d, _)| *d == least)
            .map(|(_, v)| v)
            .collect(),
        None => valid
            .iter()
            .copied()
            .filter(|v| shortened(typed, v))
            .collect(),
    };
    if found.len() > 3 {
        Vec::new()
    } else {
        found
    }
}

/// Where the keys of another part of the file go: `under \`init_config\``.
pub(super) struct Elsewhere<'k> {
    /// How to say where, after "belongs".
    pub(super) place: &'static str,
    /// The keys valid there and not here.
    pub(super) keys: Vec<&'k str>,
}

/// `a`, `a` or `b`, `a`, `b` or `c`: each key quoted.
fn either(keys: &[&str]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// Why `typed` is refused where `valid` are the keys: "did you mean" a close one, else where a
/// key close to it belongs, else (for a key with dots where `kafka_options` is valid) that
/// librdkafka properties go under `kafka_options`, else every valid key. `typed` is the key as
/// written: keys are never secrets.
pub(super) fn unknown_key(typed: &str, valid: &[&str], elsewhere: &[Elsewhere<'_>]) -> String {
    let here = meant(typed, valid);
    if !here.is_empty() {
        return format!("unknown field `{typed}`, did you mean {}?", either(&here));
    }
    for other in elsewhere {
        let there = meant(typed, &other.keys);
        if let [key] = there[..] {
            return if normal(key) == normal(typed) {
                format!("unknown field `{typed}` here: it belongs {}", other.place)
            } else {
                format!(
                    "unknown field `{typed}`, did you mean `{key}` (which belongs {})?",
                    other.place
                )
            };
        }
    }
    if typed.contains('.') && valid.contains(&"kafka_options") {
        return format!(
            "unknown field `{typed}`: a librdkafka property goes under `kafka_options`"
        );
    }
    let all: Vec<String> = valid.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown field `{typed}`, expected one of {}",
        all.join(", ")
    )
}
