//! Unanswered group messages kept as context (reference §3.7 step 9, DESIGN decision 11):
//! when a group requires a mention, the messages before the mention are what the assistant
//! needs to understand it. They are kept per chat, at most `imessage.historyLimit` each and
//! at most [`MAX_CHATS`] chats (the least recently used is evicted), handed over with the
//! next mentioned message in that chat, then cleared. Memory only: a restart forgets them,
//! which costs context, never a message.

use std::collections::{HashMap, VecDeque};

/// Chats whose context is kept at once.
pub const MAX_CHATS: usize = 1000;

#[derive(Debug)]
struct Chat<T> {
    messages: VecDeque<T>,
    used: u64,
}

/// The kept context of every group chat of one account; `T` is one kept message.
#[derive(Debug)]
pub struct GroupContext<T> {
    per_chat: usize,
    max_chats: usize,
    chats: HashMap<i64, Chat<T>>,
    tick: u64,
}

impl<T> GroupContext<T> {
    /// `per_chat` is `imessage.historyLimit`; 0 keeps nothing.
    pub fn new(per_chat: usize) -> GroupContext<T> {
        Self::with_max_chats(per_chat, MAX_CHATS)
    }

    pub fn with_max_chats(per_chat: usize, max_chats: usize) -> GroupContext<T> {
        GroupContext {
            per_chat,
            max_chats: max_chats.max(1),
            chats: HashMap::new(),
            tick: 0,
        }
    }

    /// Keeps an unanswered message of `chat_id`, dropping that chat's oldest beyond the limit.
    pub fn keep(&mut self, chat_id: i64, m: T) {
        if self.per_chat == 0 {
            return;
        }
        self.tick += 1;
        if !self.chats.contains_key(&chat_id) && self.chats.len() >= self.max_chats {
            if let Some(oldest) = self
                .chats
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(id, _)| *id)
            {
                self.chats.remove(&oldest);
            }
        }
        let chat = self.chats.entry(chat_id).or_insert_with(|| Chat {
            messages: VecDeque::new(),
            used: 0,
        });
        chat.used = self.tick;
        chat.messages.push_back(m);
        while chat.messages.len() > self.per_chat {
            chat.messages.pop_front();
        }
    }

    /// The chat's kept messages, oldest first, and forgets them.
    pub fn take(&mut self, chat_id: i64) -> Vec<T> {
        self.chats
            .remove(&chat_id)
            .map(|c| c.messages.into())
            .unwrap_or_default()
    }

    /// Chats with kept messages.
    pub fn chats(&self) -> usize {
        self.chats.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> String {
        text.to_string()
    }

    fn texts(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    #[test]
    fn kept_oldest_first_then_cleared() {
        let mut c = GroupContext::new(20);
        c.keep(1, m("a"));
        c.keep(2, m("other chat"));
        c.keep(1, m("b"));
        assert_eq!(texts(&c.take(1)), ["a", "b"]);
        assert!(c.take(1).is_empty(), "cleared after it is handed over");
        assert_eq!(texts(&c.take(2)), ["other chat"]);
    }

    #[test]
    fn at_most_history_limit_per_chat() {
        let mut c = GroupContext::new(3);
        for t in ["1", "2", "3", "4", "5"] {
            c.keep(9, m(t));
        }
        assert_eq!(texts(&c.take(9)), ["3", "4", "5"]);
    }

    #[test]
    fn zero_keeps_nothing() {
        let mut c = GroupContext::new(0);
        c.keep(1, m("a"));
        assert!(c.take(1).is_empty());
        assert_eq!(c.chats(), 0);
    }

    #[test]
    fn the_least_recently_used_chat_is_evicted() {
        let mut c = GroupContext::with_max_chats(5, 2);
        c.keep(1, m("one"));
        c.keep(2, m("two"));
        c.keep(1, m("one again"));
        c.keep(3, m("three"));
        assert_eq!(c.chats(), 2);
        assert!(c.take(2).is_empty(), "chat 2 was the least recently used");
        assert_eq!(texts(&c.take(1)), ["one", "one again"]);
    }

    #[test]
    fn the_default_bound_holds() {
        let mut c = GroupContext::new(1);
        for id in 0..(MAX_CHATS as i64 + 50) {
            c.keep(id, m("x"));
        }
        assert_eq!(c.chats(), MAX_CHATS);
    }
}
