//! Choosing which sources to believe and combining them (RFC 5905 section 11.2): the
//! intersection of correctness intervals (Marzullo's algorithm as RFC 5905 gives it) separates
//! truechimers from falsetickers, the cluster step trims outliers among the truechimers, and the
//! survivors' offsets are averaged weighted by the inverse of their root distance.

/// Fewest survivors the cluster step trims down to (RFC 5905's NMIN).
const MIN_CLUSTER: usize = 3;
/// Weight of stratum against distance when ranking survivors (RFC 5905's MAXDIST).
const STRATUM_WEIGHT: f64 = 1.0;

/// A source as selection sees it, estimated at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// The caller's index of the source.
    pub index: usize,
    /// True time minus the kernel clock (seconds), now.
    pub offset: f64,
    /// The kernel clock's frequency error as this source sees it (s/s).
    pub frequency: f64,
    /// Whether `frequency` was fitted (else it is only a hint).
    pub frequency_known: bool,
    /// The root distance: half of the correctness interval's width.
    pub root_distance: f64,
    pub jitter: f64,
    pub stratum: u8,
    pub prefer: bool,
}

/// What selection decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Indices of the truechimers left after clustering, best first.
    pub survivors: Vec<usize>,
    /// Indices of the candidates outside the intersection.
    pub falsetickers: Vec<usize>,
    /// The source whose stratum and reference ID we take.
    pub system_peer: usize,
    /// The combined offset and frequency (the frequency from the survivors that have one).
    pub offset: f64,
    pub frequency: Option<f64>,
    /// RMS of the survivors' offsets about the system peer's.
    pub selection_jitter: f64,
}

/// Why no selection could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSelection {
    NoCandidates,
    /// No interval is shared by a majority of the candidates.
    NoMajority,
    /// Fewer truechimers than `minsources`.
    TooFew {
        truechimers: usize,
        minsources: usize,
    },
}

/// The intersection interval of at least a majority of the candidates, and how many candidates
/// it allowed to be falsetickers.
fn intersection(cands: &[Candidate]) -> Option<(f64, f64)> {
    let n = cands.len();
    let mut ends: Vec<(f64, i32)> = Vec::with_capacity(3 * n);
    for c in cands {
        ends.push((c.offset - c.root_distance, -1));
        ends.push((c.offset, 0));
        ends.push((c.offset + c.root_distance, 1));
    }
    ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut allow = 0;
    while 2 * allow < n {
        let need = (n - allow) as i32;
        let (mut found, mut chime) = (0, 0);
        let mut low = f64::INFINITY;
        for &(v, kind) in &ends {
            chime -= kind;
            if chime >= need {
                low = v;
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        chime = 0;
        let mut high = f64::NEG_INFINITY;
        for &(v, kind) in ends.iter().rev() {
            chime += kind;
            if chime >= need {
                high = v;
                break;
            }
            if kind == 0 {
                found += 1;
            }
        }
        if found <= allow && low <= high {
            return Some((low, high));
        }
        allow += 1;
    }
    None
}

/// Runs intersection, clustering and combining over `cands`.
pub fn select(cands: &[Candidate], minsources: usize) -> Result<Selection, NoSelection> {
    if cands.is_empty() {
        return Err(NoSelection::NoCandidates);
    }
    let (low, high) = intersection(cands).ok_or(NoSelection::NoMajority)?;
    // Truechimers have their midpoint in the intersection (RFC 5905 section 11.2.1): a source
    // far off with a wide interval (an old sample, a large root dispersion) covers the
    // intersection but is still wrong.
    let (mut survivors, falsetickers): (Vec<&Candidate>, Vec<&Candidate>) =
        cands.iter().partition(|c| c.offset >= low && c.offset <= high);
    if survivors.len() < minsources.max(1) {
        return Err(NoSelection::TooFew {
            truechimers: survivors.len(),
            minsources,
        });
    }
    // Rank: lower stratum first, then shorter distance.
    let merit = |c: &Candidate| c.stratum as f64 * STRATUM_WEIGHT + c.root_distance;
    survivors.sort_by(|a, b| merit(a).total_cmp(&merit(b)));

    // Cluster: drop the survivor furthest from the others while that spread exceeds the
    // smallest jitter of any survivor, down to MIN_CLUSTER.
    let selection_jitter = |s: &[&Candidate], i: usize| -> f64 {
        if s.len() < 2 {
            return 0.0;
        }
        let sum: f64 = s.iter().map(|c| (c.offset - s[i].offset).powi(2)).sum();
        (sum / (s.len() - 1) as f64).sqrt()
    };
    while survivors.len() > MIN_CLUSTER {
        let (worst, max_sel) = (0..survivors.len())
            .map(|i| (i, selection_jitter(&survivors, i)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let min_peer = survivors.iter().map(|c| c.jitter).fold(f64::INFINITY, f64::min);
        if max_sel <= min_peer || survivors[worst].prefer {
            break;
        }
        survivors.remove(worst);
    }

    let system = survivors.iter().position(|c| c.prefer).unwrap_or(0);
    let (mut sum_w, mut sum_o) = (0.0, 0.0);
    let (mut sum_fw, mut sum_f) = (0.0, 0.0);
    for c in &survivors {
        let w = 1.0 / c.root_distance;
        sum_w += w;
        sum_o += w * c.offset;
        if c.frequency_known {
            sum_fw += w;
            sum_f += w * c.frequency;
        }
    }
    Ok(Selection {
        survivors: survivors.iter().map(|c| c.index).collect(),
        falsetickers: falsetickers.iter().map(|c| c.index).collect(),
        system_peer: survivors[system].index,
        offset: sum_o / sum_w,
        frequency: (sum_fw > 0.0).then(|| sum_f / sum_fw),
        selection_jitter: selection_jitter(&survivors, system),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: usize, offset: f64, distance: f64) -> Candidate {
        Candidate {
            index,
            offset,
            frequency: 1e-6 * index as f64,
            frequency_known: true,
            root_distance: distance,
            jitter: 1e-5,
            stratum: 1,
            prefer: false,
        }
    }

    #[test]
    fn one_falseticker_of_three_is_rejected() {
        let c = [cand(0, 0.001, 0.01), cand(1, 0.5, 0.01), cand(2, 0.003, 0.01)];
        let s = select(&c, 1).unwrap();
        assert_eq!(s.falsetickers, vec![1]);
        let mut survivors = s.survivors.clone();
        survivors.sort();
        assert_eq!(survivors, vec![0, 2]);
        assert!((s.offset - 0.002).abs() < 1e-9);
        assert!(s.frequency.is_some());
    }

    #[test]
    fn a_wide_interval_far_off_is_still_a_falseticker() {
        let c = [cand(0, 0.001, 0.01), cand(1, 0.025, 0.03), cand(2, 0.003, 0.01)];
        assert_eq!(select(&c, 1).unwrap().falsetickers, vec![1]);
    }

    #[test]
    fn two_disagreeing_sources_have_no_majority() {
        let c = [cand(0, 0.0, 0.01), cand(1, 0.5, 0.01)];
        assert_eq!(select(&c, 1), Err(NoSelection::NoMajority));
        assert_eq!(select(&[], 1), Err(NoSelection::NoCandidates));
    }

    #[test]
    fn minsources_is_enforced() {
        let c = [cand(0, 0.0, 0.01), cand(1, 0.001, 0.01)];
        assert_eq!(
            select(&c, 3),
            Err(NoSelection::TooFew {
                truechimers: 2,
                minsources: 3
            })
        );
        assert!(select(&c, 2).is_ok());
    }

    #[test]
    fn lower_stratum_and_prefer_decide_the_system_peer() {
        let mut c = [cand(0, 0.0, 0.001), cand(1, 0.0001, 0.002)];
        c[0].stratum = 2;
        assert_eq!(select(&c, 1).unwrap().system_peer, 1);
        c[0].prefer = true;
        assert_eq!(select(&c, 1).unwrap().system_peer, 0);
    }

    #[test]
    fn clustering_trims_the_outlier_of_five() {
        let mut c: Vec<Candidate> = (0..4).map(|i| cand(i, 1e-5 * i as f64, 0.05)).collect();
        c.push(cand(4, 0.03, 0.05));
        let s = select(&c, 1).unwrap();
        assert!(s.falsetickers.is_empty());
        assert!(!s.survivors.contains(&4), "{s:?}");
        assert!(s.survivors.len() >= 3);
    }

    #[test]
    fn weights_follow_distance() {
        let c = [cand(0, 0.0, 0.001), cand(1, 0.0008, 0.004)];
        let s = select(&c, 1).unwrap();
        // Weights 1000 and 250: 0.0008 * 250 / 1250.
        assert!((s.offset - 0.00016).abs() < 1e-9, "{}", s.offset);
    }
}
