//! Saved optimizer state: JSON (serde) or a compact exact binary form.

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// Everything an optimizer accumulates between steps: its step count and,
/// per parameter index, its slot buffers (velocity, momentum, ...). Restoring
/// it with [`Optimizer::load_state`](crate::Optimizer::load_state) into an
/// optimizer with the same hyper-parameters makes a resumed run continue
/// bit-for-bit as the uninterrupted one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The optimizer's name (`"sgd"`, `"rmsprop"`, `"adam"`, `"adamw"`).
    pub optimizer: String,
    /// Steps taken so far.
    pub iterations: u64,
    /// What each slot holds, in slot order (e.g. `["velocity", "momentum"]`).
    pub slot_names: Vec<String>,
    /// `slots[param][slot]`: the slot buffers of each parameter index, empty
    /// for an index not updated yet.
    pub slots: Vec<Vec<Vec<f32>>>,
}

const MAGIC: &[u8; 8] = b"CNVOPT01";

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            Error::BadState(format!("truncated: needs {n} bytes at offset {} of {}", self.at, self.bytes.len()))
        })?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n > left {
            return Err(Error::BadState(format!("{what} count {n} exceeds the {left} bytes left")));
        }
        Ok(n as usize)
    }
    fn string(&mut self) -> Result<String> {
        let n = self.len("string")?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| Error::BadState(format!("bad UTF-8: {e}")))
    }
}

impl OptimizerState {
    /// As JSON (human-readable; f32 values round-trip exactly through
    /// serde_json's shortest representation).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::BadState(e.to_string()))
    }

    /// From [`OptimizerState::to_json`]'s output.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::BadState(e.to_string()))
    }

    /// A compact little-endian binary form with exact f32 bits:
    /// `"CNVOPT01"`, then length-prefixed (u64) fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        let put = |x: u64, out: &mut Vec<u8>| out.extend_from_slice(&x.to_le_bytes());
        put(self.optimizer.len() as u64, &mut out);
        out.extend_from_slice(self.optimizer.as_bytes());
        put(self.iterations, &mut out);
        put(self.slot_names.len() as u64, &mut out);
        for n in &self.slot_names {
            put(n.len() as u64, &mut out);
            out.extend_from_slice(n.as_bytes());
        }
        put(self.slots.len() as u64, &mut out);
        for p in &self.slots {
            put(p.len() as u64, &mut out);
            for s in p {
                put(s.len() as u64, &mut out);
                for x in s {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        out
    }

    /// From [`OptimizerState::to_bytes`]'s output; any malformation is an
    /// [`Error::BadState`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(Error::BadState("not an optimizer state (bad magic)".into()));
        }
        let optimizer = r.string()?;
        let iterations = r.u64()?;
        let names = r.len("slot name")?;
        let slot_names = (0..names).map(|_| r.string()).collect::<Result<Vec<_>>>()?;
        let params = r.len("parameter")?;
        let mut slots = Vec::with_capacity(params);
        for _ in 0..params {
            let k = r.len("slot")?;
            let mut p = Vec::with_capacity(k);
            for _ in 0..k {
                let n = r.len("element")?;
                let raw = r.take(n.checked_mul(4).ok_or_else(|| Error::BadState("slot too large".into()))?)?;
                p.push(raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
            }
            slots.push(p);
        }
        if r.at != bytes.len() {
            return Err(Error::BadState(format!("{} trailing bytes", bytes.len() - r.at)));
        }
        Ok(OptimizerState { optimizer, iterations, slot_names, slots })
    }
}
