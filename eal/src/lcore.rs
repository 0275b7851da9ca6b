//! Logical cores: parsing `-l`, `-c` and `--lcores`, the per-thread lcore id, and
//! launching functions on worker lcores pinned to their CPUs.

use crate::sys;
use std::cell::Cell;
use std::collections::BTreeMap;

/// Highest lcore id + 1, as DPDK's default `RTE_MAX_LCORE`.
pub const MAX_LCORE: usize = 128;

/// Which lcores a process runs and on which CPUs each may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreLayout {
    /// lcore id -> CPUs its thread is pinned to.
    cpus: BTreeMap<u32, Vec<usize>>,
    main: u32,
}

impl LcoreLayout {
    fn new(cpus: BTreeMap<u32, Vec<usize>>) -> Result<Self, String> {
        let main = *cpus
            .keys()
            .next()
            .ok_or_else(|| "the lcore list is empty".to_string())?;
        if let Some(bad) = cpus.keys().find(|id| **id as usize >= MAX_LCORE) {
            return Err(format!(
                "lcore {bad} is out of range: lcore ids go from 0 to {}",
                MAX_LCORE - 1
            ));
        }
        Ok(LcoreLayout { cpus, main })
    }

    /// DPDK's default: one lcore per CPU this process may run on.
    pub fn all_available() -> Self {
        let cpus = sys::allowed_cpus()
            .into_iter()
            .filter(|c| *c < MAX_LCORE)
            .map(|c| (c as u32, vec![c]))
            .collect();
        LcoreLayout::new(cpus).unwrap_or_else(|_| LcoreLayout {
            cpus: BTreeMap::from([(0, vec![0])]),
            main: 0,
        })
    }

    /// Sets the main lcore (`--main-lcore`), which must be one of the lcores.
    pub fn with_main(mut self, main: Option<u32>) -> Result<Self, String> {
        if let Some(m) = main {
            if !self.cpus.contains_key(&m) {
                return Err(format!(
                    "--main-lcore {m} is not one of the lcores given ({})",
                    self.describe()
                ));
            }
            self.main = m;
        }
        Ok(self)
    }

    /// Refuses lcores mapped to CPUs this process cannot run on.
    pub fn check_cpus_available(self) -> Result<Self, String> {
        let allowed = sys::allowed_cpus();
        for (lcore, cpus) in &self.cpus {
            if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                return Err(format!(
                    "lcore {lcore} needs CPU {cpu}, which this process cannot run on (CPUs available: {}); \
                     to run more lcores than CPUs, map them, e.g. --lcores '(0-{})@({})'",
                    format_list(&allowed),
                    self.cpus.keys().last().copied().unwrap_or(0),
                    format_list(&allowed)
                ));
            }
        }
        Ok(self)
    }

    /// The main lcore (`--main-lcore`, else the first).
    pub fn main(&self) -> u32 {
        self.main
    }

    /// Every lcore id, in order.
    pub fn ids(&self) -> Vec<u32> {
        self.cpus.keys().copied().collect()
    }

    /// Worker lcores: every lcore but the main one, in id order.
    pub fn workers(&self) -> impl Iterator<Item = u32> + '_ {
        self.cpus.keys().copied().filter(move |id| *id != self.main)
    }

    /// The CPUs lcore `lcore`'s thread may run on, if it is one of this layout's.
    pub fn cpus_of(&self, lcore: u32) -> Option<&[usize]> {
        self.cpus.get(&lcore).map(Vec::as_slice)
    }

    /// Whether `lcore` is one of this layout's.
    pub fn contains(&self, lcore: u32) -> bool {
        self.cpus.contains_key(&lcore)
    }

    /// `0@0,1@(0,1)`-style summary for messages and logs.
    pub fn describe(&self) -> String {
        self.cpus
            .iter()
            .map(|(l, c)| format!("{l}@({})", format_list(c)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn format_list(v: &[usize]) -> String {
    v.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses a DPDK number list: `0-3,5,7-8`.
fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("'{s}' is not a list of numbers such as 0-3,5");
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b || b >= 4096 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `-l 0-3,5`: lcore n runs on CPU n.
pub fn parse_corelist(s: &str) -> Result<LcoreLayout, String> {
    let ids = parse_list(s).map_err(|e| format!("-l: {e}"))?;
    LcoreLayout::new(ids.into_iter().map(|c| (c as u32, vec![c])).collect())
}

/// `-c 0xf`: bit n set means lcore n on CPU n.
pub fn parse_coremask(s: &str) -> Result<LcoreLayout, String> {
    let digits = s.trim_start_matches("0x").trim_start_matches("0X");
    let bad = || format!("-c '{s}' is not a hexadecimal core mask such as 0x3");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut cpus = BTreeMap::new();
    // Walk the digits from the least significant, four CPUs per digit.
    for (i, ch) in digits.chars().rev().enumerate() {
        let nibble = ch.to_digit(16).ok_or_else(bad)?;
        for bit in 0..4 {
            if nibble & (1 << bit) != 0 {
                let id = i * 4 + bit;
                cpus.insert(id as u32, vec![id]);
            }
        }
    }
    if cpus.is_empty() {
        return Err(format!("-c '{s}' selects no lcore"));
    }
    LcoreLayout::new(cpus)
}

/// Splits at commas that are not inside parentheses.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, ch) in s.char_indices() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(format!("--lcores '{s}': unbalanced parentheses"));
        }
    }
    if depth != 0 {
        return Err(format!("--lcores '{s}': unbalanced parentheses"));
    }
    parts.push(&s[start..]);
    Ok(parts)
}

fn parse_set(s: &str) -> Result<Vec<usize>, String> {
    let inner = s
        .strip_prefix('(')
        .and_then(|x| x.strip_suffix(')'))
        .unwrap_or(s);
    parse_list(inner)
}

/// `--lcores '1,2@(5-7),(3-5)@(0,2),(0,6),7-8'`, as DPDK: a set without `@` runs
/// each lcore on its own CPU when written as a plain number or range, and on the
/// whole set when written in parentheses.
pub fn parse_lcores_map(s: &str) -> Result<LcoreLayout, String> {
    let mut cpus = BTreeMap::new();
    for elem in split_top_level(s)? {
        let elem = elem.trim();
        let (lset, cset) = match elem.split_once('@') {
            Some((l, c)) => (l, Some(c)),
            None => (elem, None),
        };
        let lcores = parse_set(lset).map_err(|e| format!("--lcores: {e}"))?;
        for l in &lcores {
            let on = match cset {
                Some(c) => parse_set(c).map_err(|e| format!("--lcores: {e}"))?,
                None if lset.starts_with('(') => lcores.clone(),
                None => vec![*l],
            };
            if cpus.insert(*l as u32, on).is_some() {
                return Err(format!("--lcores '{s}': lcore {l} is given twice"));
            }
        }
    }
    LcoreLayout::new(cpus)
}

thread_local! {
    static LCORE_ID: Cell<Option<u32>> = const { Cell::new(None) };
}

/// The lcore id of the calling thread, or `None` for a thread the EAL did not start.
pub fn current() -> Option<u32> {
    LCORE_ID.with(Cell::get)
}

/// Marks the calling thread as `lcore` and pins it to `cpus`.
pub(crate) fn bind_current_thread(lcore: u32, cpus: &[usize]) -> crate::Result<()> {
    sys::set_affinity(cpus).map_err(|e| {
        crate::Error::Lcore(format!(
            "cannot pin lcore {lcore} to CPUs {}: {e}",
            format_list(cpus)
        ))
    })?;
    LCORE_ID.with(|c| c.set(Some(lcore)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corelist_and_coremask() {
        assert_eq!(
            parse_corelist("0-2,5").map(|l| l.ids()),
            Ok(vec![0, 1, 2, 5])
        );
        assert_eq!(parse_coremask("0x13").map(|l| l.ids()), Ok(vec![0, 1, 4]));
        assert_eq!(parse_coremask("f0").map(|l| l.ids()), Ok(vec![4, 5, 6, 7]));
        assert!(parse_corelist("3-1").is_err());
        assert!(parse_corelist("a").is_err());
        assert!(parse_corelist("200").is_err());
        assert!(parse_coremask("0x0").is_err());
        assert!(parse_coremask("0xg").is_err());
    }

    #[test]
    fn lcores_map_as_dpdk_documents_it() {
        let l = parse_lcores_map("1,2@(5-7),(3-5)@(0,2),(0,6),7-8").expect("parses");
        assert_eq!(l.cpus_of(1), Some(&[1][..]));
        assert_eq!(l.cpus_of(2), Some(&[5, 6, 7][..]));
        assert_eq!(l.cpus_of(4), Some(&[0, 2][..]));
        assert_eq!(l.cpus_of(0), Some(&[0, 6][..]));
        assert_eq!(l.cpus_of(6), Some(&[0, 6][..]));
        assert_eq!(l.cpus_of(8), Some(&[8][..]));
        assert_eq!(l.main(), 0);
        assert!(parse_lcores_map("(0-3@0").is_err());
        assert!(parse_lcores_map("1,1@2").is_err());
    }

    #[test]
    fn main_lcore_must_be_listed() {
        let l = parse_corelist("0-1").expect("parses");
        assert_eq!(l.clone().with_main(Some(1)).map(|l| l.main()), Ok(1));
        assert!(l.with_main(Some(2)).is_err());
    }

    #[test]
    fn workers_exclude_main() {
        let l = parse_corelist("0-2")
            .and_then(|l| l.with_main(Some(1)))
            .expect("parses");
        assert_eq!(l.workers().collect::<Vec<_>>(), vec![0, 2]);
    }
}
