//! The rules in force: the servers file's rules compiled, per level, replaced whole by a
//! reload (open sessions are judged by the new ones from their next request).
//!
//! Owns: which rules are in force. Must not touch: where they apply.

use parking_lot::RwLock;
use std::{collections::HashMap, sync::Arc};

use super::RuleSet;
use crate::config::{DeniedAs, PolicyConfig};

/// The rules in force, replaced whole by a reload.
pub struct Book {
    current: RwLock<Arc<Compiled>>,
}

pub struct Compiled {
    pub gateway: RuleSet,
    pub servers: HashMap<String, RuleSet>,
    pub denied: DeniedAs,
    pub headers: Vec<String>,
    /// Whether any rule may read a call's arguments (else a call is judged by its name alone).
    pub reads_arguments: bool,
}

impl Book {
    pub fn new(config: &PolicyConfig) -> Result<Book, String> {
        Ok(Book {
            current: RwLock::new(Arc::new(compiled(config)?)),
        })
    }

    /// Puts the file's new rules in force (all or nothing).
    pub fn replace(&self, config: &PolicyConfig) -> Result<(), String> {
        let fresh = compiled(config)?;
        *self.current.write() = Arc::new(fresh);
        Ok(())
    }

    pub fn current(&self) -> Arc<Compiled> {
        self.current.read().clone()
    }
}

fn compiled(config: &PolicyConfig) -> Result<Compiled, String> {
    // Numbered across all levels: a session's memo keeps one outcome per rule.
    let mut next = 0;
    let gateway = RuleSet::numbered(&config.gateway, &mut next)?;
    let mut servers = HashMap::new();
    for (name, rules) in &config.servers {
        servers.insert(name.clone(), RuleSet::numbered(rules, &mut next)?);
    }
    let reads_arguments = std::iter::once(&gateway)
        .chain(servers.values())
        .flat_map(|set| set.deny.iter().chain(&set.allow))
        .any(|rule| rule.reads_arguments);
    Ok(Compiled {
        gateway,
        servers,
        denied: config.denied,
        headers: config.headers.clone(),
        reads_arguments,
    })
}
