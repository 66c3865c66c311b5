//! Durable validator state in SQLite (WAL).
//!
//! Crash safety comes from one rule: a round is written — its attempts, the
//! score updates derived from them, the epoch's weights and the proof
//! bundles — in ONE transaction, keyed by round number. A validator killed at
//! any point either committed the round or left no trace of it, and on
//! restart simply runs the next uncommitted round number. Scores are always
//! recomputed from committed attempts with [`crate::scoring`], so
//! [`State::replay`] can check them independently.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::registry::NodeEntry;
use crate::scoring::{self, RoundOutcome, ScoringParams};

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The round being committed is not the next one (already committed, or a gap).
    #[error("round {got} cannot be committed: the next round is {expected}")]
    RoundOutOfOrder {
        /// The next uncommitted round.
        expected: u64,
        /// The round offered.
        got: u64,
    },
    /// The database was written by a newer schema.
    #[error("database schema version {0} is newer than this validator understands")]
    SchemaTooNew(i64),
    /// A stored value is out of range (corruption or manual edits).
    #[error("corrupt state: {0}")]
    Corrupt(String),
}

/// Verdict of one verification step of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Checked and passed.
    Pass,
    /// Checked and failed.
    Fail,
    /// Not reached (an earlier step failed).
    Skipped,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Pass => "pass",
            Step::Fail => "fail",
            Step::Skipped => "skipped",
        }
    }
}

/// How one challenge attempt ended. Only [`Outcome::Correct`] earns credit.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Verified evidence, valid receipt, correct answer.
    Correct,
    /// Verified channel, but the answer differs from the validator's own.
    Wrong,
    /// The node did not finish within the per-node timeout.
    Timeout,
    /// The evidence did not verify (signature, chain, measurement, nonce, age, binding).
    AttestationFailed,
    /// The receipt did not verify or its digests do not match.
    ReceiptInvalid,
    /// Connection refused/reset, HTTP error status, unparsable body.
    Transport,
    /// The node answered the sealed request with an error or a malformed envelope.
    Protocol,
}

impl Outcome {
    /// Stable text stored in the database and shown in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Correct => "correct",
            Outcome::Wrong => "wrong",
            Outcome::Timeout => "timeout",
            Outcome::AttestationFailed => "attestation_failed",
            Outcome::ReceiptInvalid => "receipt_invalid",
            Outcome::Transport => "transport",
            Outcome::Protocol => "protocol",
        }
    }

    /// Parses [`Outcome::as_str`].
    pub fn parse(s: &str) -> Option<Outcome> {
        Some(match s {
            "correct" => Outcome::Correct,
            "wrong" => Outcome::Wrong,
            "timeout" => Outcome::Timeout,
            "attestation_failed" => Outcome::AttestationFailed,
            "receipt_invalid" => Outcome::ReceiptInvalid,
            "transport" => Outcome::Transport,
            "protocol" => Outcome::Protocol,
            _ => return None,
        })
    }
}

/// One challenge sent to one node in one round (or the attestation step
/// alone, when that failed).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Attempt {
    /// Index within the node's round (0-based).
    pub seq: u32,
    /// Validator clock when the attempt started (unix ms).
    pub time_ms: u64,
    /// The attestation nonce, hex.
    pub nonce_hex: String,
    /// Challenge model CID (absent when attestation failed first).
    pub model: Option<String>,
    /// Attestation verification.
    pub attestation: Step,
    /// Receipt verification (signature + digests).
    pub receipt: Step,
    /// Answer comparison with the validator's own computation.
    pub correctness: Step,
    /// Overall result.
    pub outcome: Outcome,
    /// Validator-side latency, request sent → answer received (µs).
    pub latency_us: Option<u64>,
    /// Failure reason, for humans.
    pub reason: Option<String>,
    /// Platform the evidence claims (`dev (insecure)`, `aws-nitro`).
    pub platform: Option<String>,
    /// Measurement verdict (matched release, or the mismatch).
    pub measurement: Option<String>,
    /// Proof bundle (JSON) of a correct answer, kept with bounded retention.
    #[serde(skip)]
    pub bundle: Option<String>,
    /// Timings of a verified language-model answer (this process only: not stored,
    /// `None` when read back; the scored time is in `latency_us`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub llm: Option<crate::llm_challenge::LlmTiming>,
}

/// Everything one node did in one round.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRound {
    /// The node.
    pub node: NodeEntry,
    /// Its attempts (at least one).
    pub attempts: Vec<Attempt>,
}

/// A finished round, ready to commit.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundRecord {
    /// Round number (1-based, contiguous).
    pub round: u64,
    /// Validator clock at start / end (unix ms).
    pub started_ms: u64,
    /// See `started_ms`.
    pub finished_ms: u64,
    /// Per-node timeout in force (caps `t_max`).
    pub timeout_ms: u64,
    /// One entry per node of the round.
    pub nodes: Vec<NodeRound>,
}

/// Weights of one epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EpochWeights {
    /// Epoch number (`round / epoch_rounds`).
    pub epoch: u64,
    /// Round whose scores they come from.
    pub round: u64,
    /// Node id → normalised weight.
    pub weights: BTreeMap<String, f64>,
    /// Node id → Bittensor u16 form (max-upscaled, zeros dropped).
    pub weights_u16: BTreeMap<String, u16>,
    /// Node id → hotkey, when known.
    pub hotkeys: BTreeMap<String, String>,
}

/// What [`State::commit_round`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Scores after the round.
    pub scores: BTreeMap<String, f64>,
    /// Weights, when the round closed an epoch.
    pub weights: Option<EpochWeights>,
}

/// Settings for committing rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitSettings {
    /// Score-update parameters.
    pub scoring: ScoringParams,
    /// Weights are set every this many rounds (≥ 1).
    pub epoch_rounds: u64,
    /// Proof bundles kept (the newest); older ones are deleted in the same transaction.
    pub max_bundles: u64,
}

/// Result of [`State::replay`]: the stored history checked against itself.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ReplayReport {
    /// Committed rounds.
    pub rounds: u64,
    /// Attempt rows.
    pub attempts: u64,
    /// Human-readable inconsistencies; empty means consistent.
    pub problems: Vec<String>,
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    hotkey TEXT,
    first_round INTEGER NOT NULL,
    last_round INTEGER NOT NULL
);
CREATE TABLE rounds (
    round INTEGER PRIMARY KEY,
    started_ms INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    timeout_ms INTEGER NOT NULL,
    node_count INTEGER NOT NULL
);
CREATE TABLE attempts (
    round INTEGER NOT NULL REFERENCES rounds(round),
    node_id TEXT NOT NULL REFERENCES nodes(id),
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    nonce TEXT NOT NULL,
    model TEXT,
    attestation TEXT NOT NULL,
    receipt TEXT NOT NULL,
    correctness TEXT NOT NULL,
    outcome TEXT NOT NULL,
    latency_us INTEGER,
    reason TEXT,
    platform TEXT,
    measurement TEXT,
    PRIMARY KEY (round, node_id, seq)
);
CREATE TABLE scores (
    round INTEGER NOT NULL REFERENCES rounds(round),
    node_id TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (round, node_id)
);
CREATE TABLE weights (
    epoch INTEGER NOT NULL,
    round INTEGER NOT NULL REFERENCES rounds(round),
    node_id TEXT NOT NULL,
    weight REAL NOT NULL,
    weight_u16 INTEGER NOT NULL,
    PRIMARY KEY (epoch, node_id)
);
CREATE TABLE bundles (
    round INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    bundle TEXT NOT NULL,
    PRIMARY KEY (round, node_id, seq)
);
"#,
    // Per-node lookups (latest score, outcome counts) without scanning the history.
    r#"
CREATE INDEX scores_by_node ON scores (node_id, round);
CREATE INDEX attempts_by_node ON attempts (node_id, outcome);
"#,
];

fn to_i64(v: u64) -> Result<i64, StateError> {
    i64::try_from(v).map_err(|_| StateError::Corrupt(format!("{v} exceeds i64")))
}

fn to_u64(v: i64) -> Result<u64, StateError> {
    u64::try_from(v).map_err(|_| StateError::Corrupt(format!("negative value {v}")))
}

/// The validator's database.
#[derive(Debug)]
pub struct State {
    conn: Connection,
}

impl State {
    /// Opens (creating if needed) the database, switches it to WAL and applies migrations.
    pub fn open(path: &Path) -> Result<State, StateError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<State, StateError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<State, StateError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL + synchronous=FULL: a committed round survives power loss, not just SIGKILL.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);",
        )?;
        let current: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM migrations",
            [],
            |r| r.get(0),
        )?;
        let known = MIGRATIONS.len() as i64;
        if current > known {
            return Err(StateError::SchemaTooNew(current));
        }
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            tx.execute_batch(sql)?;
            // Migration time is informational only; 0 keeps this module clock-free.
            tx.execute(
                "INSERT INTO migrations (version, applied_ms) VALUES (?1, 0)",
                params![i as i64 + 1],
            )?;
        }
        tx.commit()?;
        Ok(State { conn })
    }

    /// The journal mode SQLite reports (`wal` once opened on a file).
    pub fn journal_mode(&self) -> Result<String, StateError> {
        Ok(self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    /// The next round to run: one past the last committed round.
    pub fn next_round(&self) -> Result<u64, StateError> {
        next_round(&self.conn)
    }

    /// Commits a finished round atomically: node rows, attempts, recomputed
    /// scores, epoch weights and bundles. Fails without writing anything if
    /// `record.round` is not [`State::next_round`].
    pub fn commit_round(
        &mut self,
        record: &RoundRecord,
        settings: &CommitSettings,
    ) -> Result<Committed, StateError> {
        let tx = self.conn.transaction()?;
        let expected = next_round(&tx)?;
        if record.round != expected {
            return Err(StateError::RoundOutOfOrder {
                expected,
                got: record.round,
            });
        }
        let round = to_i64(record.round)?;
        tx.execute(
            "INSERT INTO rounds (round, started_ms, finished_ms, timeout_ms, node_count) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                round,
                to_i64(record.started_ms)?,
                to_i64(record.finished_ms)?,
                to_i64(record.timeout_ms)?,
                record.nodes.len() as i64
            ],
        )?;
        for nr in &record.nodes {
            let n = &nr.node;
            tx.execute(
                "INSERT INTO nodes (id, url, hotkey, first_round, last_round) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT(id) DO UPDATE SET url = excluded.url, hotkey = excluded.hotkey, last_round = excluded.last_round",
                params![n.id, n.url, n.hotkey, round],
            )?;
            for a in &nr.attempts {
                tx.execute(
                    "INSERT INTO attempts (round, node_id, seq, time_ms, nonce, model, attestation, receipt, correctness,
                                           outcome, latency_us, reason, platform, measurement)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                    params![
                        round,
                        n.id,
                        i64::from(a.seq),
                        to_i64(a.time_ms)?,
                        a.nonce_hex,
                        a.model,
                        a.attestation.as_str(),
                        a.receipt.as_str(),
                        a.correctness.as_str(),
                        a.outcome.as_str(),
                        a.latency_us.map(to_i64).transpose()?,
                        a.reason,
                        a.platform,
                        a.measurement,
                    ],
                )?;
                if let (Some(b), Outcome::Correct) = (&a.bundle, a.outcome) {
                    tx.execute(
                        "INSERT INTO bundles (round, node_id, seq, bundle) VALUES (?1, ?2, ?3, ?4)",
                        params![round, n.id, i64::from(a.seq), b],
                    )?;
                }
            }
        }
        let prev = latest_scores(&tx)?;
        let scores = compute_round(&tx, record.round, &prev, &settings.scoring)?;
        for (id, s) in &scores {
            tx.execute(
                "INSERT INTO scores (round, node_id, score) VALUES (?1, ?2, ?3)",
                params![round, id, s],
            )?;
        }
        let weights = if settings.epoch_rounds > 0
            && record.round.is_multiple_of(settings.epoch_rounds)
        {
            let w = scoring::normalise(&scores);
            let u = scoring::to_u16(&w);
            let epoch = record.round / settings.epoch_rounds;
            for (id, wt) in &w {
                tx.execute(
                    "INSERT INTO weights (epoch, round, node_id, weight, weight_u16) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![to_i64(epoch)?, round, id, wt, i64::from(u.get(id).copied().unwrap_or(0))],
                )?;
            }
            let hotkeys = record
                .nodes
                .iter()
                .filter_map(|n| n.node.hotkey.clone().map(|h| (n.node.id.clone(), h)))
                .collect();
            Some(EpochWeights {
                epoch,
                round: record.round,
                weights: w,
                weights_u16: u,
                hotkeys,
            })
        } else {
            None
        };
        tx.execute(
            "DELETE FROM bundles WHERE rowid NOT IN (SELECT rowid FROM bundles ORDER BY round DESC, node_id, seq LIMIT ?1)",
            params![to_i64(settings.max_bundles)?],
        )?;
        tx.commit()?;
        Ok(Committed { scores, weights })
    }

    /// Current score of every node that has one (from its latest round).
    pub fn latest_scores(&self) -> Result<BTreeMap<String, f64>, StateError> {
        latest_scores(&self.conn)
    }

    /// The most recent epoch's weights, if any epoch closed yet.
    pub fn latest_weights(&self) -> Result<Option<EpochWeights>, StateError> {
        let Some((epoch, round)): Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT epoch, round FROM weights ORDER BY epoch DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
        else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT w.node_id, w.weight, w.weight_u16, n.hotkey FROM weights w LEFT JOIN nodes n ON n.id = w.node_id
             WHERE w.epoch = ?1 ORDER BY w.node_id",
        )?;
        let mut out = EpochWeights {
            epoch: to_u64(epoch)?,
            round: to_u64(round)?,
            weights: BTreeMap::new(),
            weights_u16: BTreeMap::new(),
            hotkeys: BTreeMap::new(),
        };
        let rows = stmt.query_map(params![epoch], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, f64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        for row in rows {
            let (id, w, u, hk) = row?;
            if u > 0 {
                let u =
                    u16::try_from(u).map_err(|_| StateError::Corrupt(format!("weight_u16 {u}")))?;
                out.weights_u16.insert(id.clone(), u);
            }
            if let Some(hk) = hk {
                out.hotkeys.insert(id.clone(), hk);
            }
            out.weights.insert(id, w);
        }
        Ok(Some(out))
    }

    /// Number of attempt rows per outcome for one node, over all rounds.
    pub fn outcome_counts(&self, node_id: &str) -> Result<BTreeMap<Outcome, u64>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT outcome, COUNT(*) FROM attempts WHERE node_id = ?1 GROUP BY outcome",
        )?;
        let rows = stmt.query_map(params![node_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (o, c) = row?;
            let o =
                Outcome::parse(&o).ok_or_else(|| StateError::Corrupt(format!("outcome `{o}`")))?;
            out.insert(o, to_u64(c)?);
        }
        Ok(out)
    }

    /// `(node id, outcome, attempts)` over all rounds, for every node.
    pub fn all_outcome_counts(&self) -> Result<Vec<(String, Outcome, u64)>, StateError> {
        let mut stmt = self
            .conn
            .prepare("SELECT node_id, outcome, COUNT(*) FROM attempts GROUP BY node_id, outcome ORDER BY node_id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, o, c) = row?;
            let o =
                Outcome::parse(&o).ok_or_else(|| StateError::Corrupt(format!("outcome `{o}`")))?;
            out.push((id, o, to_u64(c)?));
        }
        Ok(out)
    }

    /// All attempts of a round, by node id.
    pub fn round_attempts(&self, round: u64) -> Result<BTreeMap<String, Vec<Attempt>>, StateError> {
        let mut stmt = self.conn.prepare(
            "SELECT node_id, seq, time_ms, nonce, model, attestation, receipt, correctness, outcome, latency_us,
                    reason, platform, measurement
             FROM attempts WHERE round = ?1 ORDER BY node_id, seq",
        )?;
        let step = |s: String| match s.as_str() {
            "pass" => Step::Pass,
            "fail" => Step::Fail,
            _ => Step::Skipped,
        };
        let rows = stmt.query_map(params![to_i64(round)?], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<String>>(10)?,
                r.get::<_, Option<String>>(11)?,
                r.get::<_, Option<String>>(12)?,
            ))
        })?;
        let mut out: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
        for row in rows {
            let (
                id,
                seq,
                time_ms,
                nonce,
                model,
                att,
                rec,
                cor,
                outc,
                lat,
                reason,
                platform,
                measurement,
            ) = row?;
            let outcome = Outcome::parse(&outc)
                .ok_or_else(|| StateError::Corrupt(format!("outcome `{outc}`")))?;
            out.entry(id).or_default().push(Attempt {
                seq: u32::try_from(seq).map_err(|_| StateError::Corrupt(format!("seq {seq}")))?,
                time_ms: to_u64(time_ms)?,
                nonce_hex: nonce,
                model,
                attestation: step(att),
                receipt: step(rec),
                correctness: step(cor),
                outcome,
                latency_us: lat.map(to_u64).transpose()?,
                reason,
                platform,
                measurement,
                bundle: None,
                llm: None,
            });
        }
        Ok(out)
    }

    /// Number of stored proof bundles.
    pub fn bundle_count(&self) -> Result<u64, StateError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM bundles", [], |r| r.get(0))?;
        to_u64(n)
    }

    /// Checks the whole history: rounds contiguous from 1, every round has
    /// attempts for exactly its nodes, no attempt outside a committed round,
    /// and every stored score equals a replay of the attempts (bit for bit).
    pub fn replay(&self, params: &ScoringParams) -> Result<ReplayReport, StateError> {
        let mut report = ReplayReport::default();
        let rounds: Vec<(i64, i64)> = {
            let mut stmt = self
                .conn
                .prepare("SELECT round, node_count FROM rounds ORDER BY round")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        report.rounds = rounds.len() as u64;
        report.attempts = to_u64(self.conn.query_row(
            "SELECT COUNT(*) FROM attempts",
            [],
            |r| r.get(0),
        )?)?;
        let orphans: i64 = self.conn.query_row(
            "SELECT COUNT(*) FROM attempts WHERE round NOT IN (SELECT round FROM rounds)",
            [],
            |r| r.get(0),
        )?;
        if orphans > 0 {
            report
                .problems
                .push(format!("{orphans} attempts outside committed rounds"));
        }
        let mut prev: BTreeMap<String, f64> = BTreeMap::new();
        for (i, (round, node_count)) in rounds.iter().enumerate() {
            if *round != i as i64 + 1 {
                report
                    .problems
                    .push(format!("round {round} found where {} was expected", i + 1));
            }
            let nodes: i64 = self.conn.query_row(
                "SELECT COUNT(DISTINCT node_id) FROM attempts WHERE round = ?1",
                params![round],
                |r| r.get(0),
            )?;
            if nodes != *node_count {
                report.problems.push(format!(
                    "round {round}: {nodes} nodes with attempts, {node_count} recorded"
                ));
            }
            let replayed = compute_round(&self.conn, to_u64(*round)?, &prev, params)?;
            let stored: BTreeMap<String, f64> = {
                let mut stmt = self
                    .conn
                    .prepare("SELECT node_id, score FROM scores WHERE round = ?1")?;
                let rows = stmt.query_map(params![round], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            if stored != replayed {
                report.problems.push(format!(
                    "round {round}: stored scores {stored:?} != replay {replayed:?}"
                ));
            }
            for (id, s) in replayed {
                prev.insert(id, s);
            }
        }
        Ok(report)
    }
}

fn next_round(conn: &Connection) -> Result<u64, StateError> {
    let last: i64 = conn.query_row("SELECT COALESCE(MAX(round), 0) FROM rounds", [], |r| {
        r.get(0)
    })?;
    Ok(to_u64(last)? + 1)
}

fn latest_scores(conn: &Connection) -> Result<BTreeMap<String, f64>, StateError> {
    let mut stmt = conn.prepare(
        "SELECT s.node_id, s.score FROM scores s
         JOIN (SELECT node_id, MAX(round) AS r FROM scores GROUP BY node_id) m ON m.node_id = s.node_id AND m.r = s.round",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Per-node round outcomes of `round`, read back from committed attempts: a
/// node is verified only if it has attempts and every one is correct; its
/// latency is the mean of those attempts' latencies.
fn round_outcomes(
    conn: &Connection,
    round: u64,
) -> Result<BTreeMap<String, RoundOutcome>, StateError> {
    let mut stmt = conn.prepare(
        "SELECT node_id, SUM(outcome = 'correct'), COUNT(*), SUM(COALESCE(latency_us, 0))
         FROM attempts WHERE round = ?1 GROUP BY node_id ORDER BY node_id",
    )?;
    let rows = stmt.query_map(params![to_i64(round)?], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (id, ok, n, lat_sum) = row?;
        let outcome = if n > 0 && ok == n {
            RoundOutcome::Verified {
                latency_secs: lat_sum as f64 / n as f64 / 1e6,
            }
        } else {
            RoundOutcome::Failed
        };
        out.insert(id, outcome);
    }
    Ok(out)
}

/// Scores after `round`, from the committed attempts of that round and the
/// previous scores. The one function both the live path and the replay use.
fn compute_round(
    conn: &Connection,
    round: u64,
    prev: &BTreeMap<String, f64>,
    params: &ScoringParams,
) -> Result<BTreeMap<String, f64>, StateError> {
    let (timeout_ms,): (i64,) = conn.query_row(
        "SELECT timeout_ms FROM rounds WHERE round = ?1",
        params![to_i64(round)?],
        |r| Ok((r.get(0)?,)),
    )?;
    let outcomes = round_outcomes(conn, round)?;
    let first = round.saturating_sub(params.window_rounds.max(1)) + 1;
    let mut window = Vec::new();
    for r in first..=round {
        let o = if r == round {
            outcomes.clone()
        } else {
            round_outcomes(conn, r)?
        };
        window.extend(o.values().filter_map(|o| match o {
            RoundOutcome::Verified { latency_secs } => Some(*latency_secs),
            RoundOutcome::Failed => None,
        }));
    }
    Ok(scoring::score_round(
        prev,
        &outcomes,
        &window,
        timeout_ms as f64 / 1e3,
        params,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeEntry {
        NodeEntry {
            id: id.into(),
            url: format!("http://127.0.0.1/{id}"),
            hotkey: None,
            via: Default::default(),
        }
    }

    fn attempt(seq: u32, outcome: Outcome, latency_us: Option<u64>) -> Attempt {
        Attempt {
            seq,
            time_ms: 1,
            nonce_hex: "00".into(),
            model: Some("cid".into()),
            attestation: Step::Pass,
            receipt: Step::Pass,
            correctness: if outcome == Outcome::Correct {
                Step::Pass
            } else {
                Step::Fail
            },
            outcome,
            latency_us,
            reason: None,
            platform: Some("dev (insecure)".into()),
            measurement: None,
            bundle: Some("{}".into()),
            llm: None,
        }
    }

    fn record(round: u64) -> RoundRecord {
        RoundRecord {
            round,
            started_ms: round * 1000,
            finished_ms: round * 1000 + 10,
            timeout_ms: 2000,
            nodes: vec![
                NodeRound {
                    node: node("fast"),
                    attempts: vec![
                        attempt(0, Outcome::Correct, Some(10_000)),
                        attempt(1, Outcome::Correct, Some(12_000)),
                    ],
                },
                NodeRound {
                    node: node("slow"),
                    attempts: vec![attempt(0, Outcome::Correct, Some(900_000))],
                },
                NodeRound {
                    node: node("liar"),
                    attempts: vec![
                        attempt(0, Outcome::Correct, Some(5_000)),
                        attempt(1, Outcome::Wrong, Some(5_000)),
                    ],
                },
            ],
        }
    }

    fn settings() -> CommitSettings {
        CommitSettings {
            scoring: ScoringParams::default(),
            epoch_rounds: 2,
            max_bundles: 4,
        }
    }

    #[test]
    fn commits_replays_and_rejects_out_of_order() {
        let mut st = State::in_memory().unwrap();
        assert_eq!(st.next_round().unwrap(), 1);
        for r in 1..=4 {
            let c = st.commit_round(&record(r), &settings()).unwrap();
            assert_eq!(c.weights.is_some(), r % 2 == 0);
        }
        assert!(matches!(
            st.commit_round(&record(4), &settings()),
            Err(StateError::RoundOutOfOrder {
                expected: 5,
                got: 4
            })
        ));
        assert!(matches!(
            st.commit_round(&record(7), &settings()),
            Err(StateError::RoundOutOfOrder {
                expected: 5,
                got: 7
            })
        ));
        let scores = st.latest_scores().unwrap();
        assert!(scores["fast"] > scores["slow"]);
        assert_eq!(
            scores["liar"], 0.0,
            "one wrong answer in a round voids the round"
        );
        let rep = st.replay(&ScoringParams::default()).unwrap();
        assert!(rep.problems.is_empty(), "{:?}", rep.problems);
        assert_eq!(rep.rounds, 4);
        assert_eq!(rep.attempts, 4 * 5);
        let w = st.latest_weights().unwrap().unwrap();
        assert_eq!(w.epoch, 2);
        assert!(!w.weights_u16.contains_key("liar"));
        assert_eq!(w.weights_u16["fast"], 65535);
        assert_eq!(st.bundle_count().unwrap(), 4, "bounded retention");
        assert_eq!(st.outcome_counts("liar").unwrap()[&Outcome::Wrong], 4);
    }

    #[test]
    fn replay_detects_tampering() {
        let mut st = State::in_memory().unwrap();
        for r in 1..=3 {
            st.commit_round(&record(r), &settings()).unwrap();
        }
        // A replay with different parameters disagrees.
        let other = ScoringParams {
            alpha: 0.2,
            ..ScoringParams::default()
        };
        assert!(!st.replay(&other).unwrap().problems.is_empty());
        // Changing one latency changes the replay, not the stored score.
        st.conn
            .execute(
                "UPDATE attempts SET latency_us = 1 WHERE round = 2 AND node_id = 'slow'",
                [],
            )
            .unwrap();
        assert!(
            !st.replay(&ScoringParams::default())
                .unwrap()
                .problems
                .is_empty()
        );
        // Deleting a node's attempts is a lost attempt.
        st.conn
            .execute(
                "DELETE FROM attempts WHERE round = 1 AND node_id = 'fast'",
                [],
            )
            .unwrap();
        let rep = st.replay(&ScoringParams::default()).unwrap();
        assert!(
            rep.problems.iter().any(|p| p.contains("round 1: 2 nodes")),
            "{:?}",
            rep.problems
        );
    }

    #[test]
    fn reopens_in_wal_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sqlite");
        {
            let mut st = State::open(&path).unwrap();
            assert_eq!(st.journal_mode().unwrap(), "wal");
            st.commit_round(&record(1), &settings()).unwrap();
        }
        let mut st = State::open(&path).unwrap();
        let applied: i64 = st
            .conn
            .query_row("SELECT COUNT(*) FROM migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            applied,
            MIGRATIONS.len() as i64,
            "each migration applied once"
        );
        assert_eq!(st.next_round().unwrap(), 2);
        st.commit_round(&record(2), &settings()).unwrap();
        assert!(
            st.replay(&ScoringParams::default())
                .unwrap()
                .problems
                .is_empty()
        );
    }
}
