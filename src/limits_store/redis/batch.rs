//! Group commit: the admissions and settlements that arrive while a round trip to Redis is under
//! way wait for it to end and then go together in the next one, in one script call that handles
//! each admission atomically (all of its counters or none) and in arrival order.
//!
//! Under load this turns two script calls per request into two per batch, which is most of what
//! a Redis-backed limit costs the gateway and the Redis server; at one request at a time nothing
//! waits, so nothing is slower. `redis`'s multiplexed connection pipelines commands but still
//! runs one script per request, hence this module.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::Script;
use switchyard_sdk::CounterError;
use tokio::sync::oneshot;

use super::Connection;

/// KEYS: the settled counters, then each admission's counters in turn. ARGV: the number of
/// settlements and a delta for each, then per admission its number of counters `n` and, per
/// counter, `limit, ttl_ms, cost, gauge, ask`. Settlements go first (a refund frees room for the
/// admissions behind it); a counter whose window expired is not settled, and none goes below 0.
/// An admission checks all of its counters before it charges any: its answer is `{0, i, value}`
/// naming the first spent counter, or `{1, v1, ..., vn, g1, ..., gn}` with the new values and
/// the grants. A counter charged `cost` and still below its limit also grants its node a lease
/// ([`super::lease`]) of `ask`, at most a sixteenth of what is left, never past the limit. A
/// window's counter expires with its window; a gauge's time to live restarts with each
/// admission, so it lapses only once no node has touched it for that long. Returns one answer
/// per admission.
///
/// The requests of one batch mostly share their counters (one route, one consumer), so each
/// counter is read once, worked on in `value`, and written once at the end (with its expiry):
/// three `redis.call`s per distinct counter rather than about five per request. The result is
/// the one the calls in arrival order would give; nothing else runs while a script does. Values
/// are written with `%d`: Lua would print a number past 14 digits in exponent form, which Redis
/// then refuses as an integer.
const ROUND_TRIP: &str = r"
local value, touched, order = {}, {}, {}
local function read(key)
  if value[key] == nil then
    local stored = redis.call('GET', key)
    value[key] = stored and tonumber(stored) or false
  end
  return value[key]
end
local function write(key, v, ttl, gauge)
  value[key] = v
  local t = touched[key]
  if not t then
    t = {}
    touched[key] = t
    order[#order + 1] = key
  end
  if ttl then
    t.ttl = ttl
    t.gauge = t.gauge or gauge
  end
end
local a, k = 2, 0
for s = 1, tonumber(ARGV[1]) do
  k = k + 1
  local v = read(KEYS[k])
  if v then
    v = v + tonumber(ARGV[a])
    write(KEYS[k], v < 0 and 0 or v)
  end
  a = a + 1
end
local out = {}
while a <= #ARGV do
  local n = tonumber(ARGV[a])
  a = a + 1
  local answer = nil
  for i = 1, n do
    local v = read(KEYS[k + i]) or 0
    if v >= tonumber(ARGV[a + 5 * i - 5]) then
      answer = {0, i, v}
      break
    end
  end
  if not answer then
    answer = {1}
    local grants = {}
    for i = 1, n do
      local key, at = KEYS[k + i], a + 5 * i - 5
      local limit = tonumber(ARGV[at])
      local v = (read(key) or 0) + tonumber(ARGV[at + 2])
      local grant = 0
      if v < limit then
        grant = math.min(tonumber(ARGV[at + 4]), math.floor((limit - v) / 16))
        v = v + grant
      end
      write(key, v, ARGV[at + 1], ARGV[at + 3] == '1')
      answer[#answer + 1] = v
      grants[i] = grant
    end
    for i = 1, n do
      answer[#answer + 1] = grants[i]
    end
  end
  out[#out + 1] = answer
  k = k + n
  a = a + 5 * n
end
for _, key in ipairs(order) do
  local t = touched[key]
  redis.call('SET', key, string.format('%d', value[key]), 'KEEPTTL')
  if t.ttl and (t.gauge or redis.call('PTTL', key) < 0) then redis.call('PEXPIRE', key, t.ttl) end
end
return out
";

/// At most this many admissions (and ten times as many settlements) go in one script call, so
/// one call never holds the Redis server for long.
const MOST_ADMISSIONS: usize = 256;
const MOST_SETTLEMENTS: usize = 10 * MOST_ADMISSIONS;

/// One counter of an admission, as the script takes it.
pub struct Reservation {
    /// The stored key, window included.
    pub key: String,
    pub limit: u64,
    pub ttl_ms: u64,
    pub cost: u64,
    pub gauge: bool,
    /// A lease asked beyond `cost` (zero for none).
    pub ask: u64,
}

/// The script's answer to one admission: `[1, values..., grants...]` or `[0, index, value]`.
pub type Answer = Vec<i64>;

struct Waiting {
    reservations: Vec<Reservation>,
    answer: oneshot::Sender<Result<Answer, CounterError>>,
}

#[derive(Default)]
struct Queue {
    admissions: Vec<Waiting>,
    settlements: Vec<(String, i64)>,
    /// A flush task is running: it takes whatever is queued when its round trip ends.
    flushing: bool,
}

/// The script and the queue of one Redis server's counters.
pub struct Batch {
    script: Script,
    timeout: Duration,
    queue: Mutex<Queue>,
}

impl Batch {
    pub fn new(timeout: Duration) -> Arc<Batch> {
        Arc::new(Batch { script: Script::new(ROUND_TRIP), timeout, queue: Mutex::default() })
    }

    /// Runs at admission on a single server: queues `reservations` and waits for the round
    /// trip that carries them (started here when none is under way). The caller bounds the
    /// wait (`redis_timeout`); the round trip is bounded on its own.
    pub async fn admit(
        self: &Arc<Self>,
        connection: &Connection,
        reservations: Vec<Reservation>,
    ) -> Result<Answer, CounterError> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.admissions.push(Waiting { reservations, answer });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).flush(connection.clone()));
        }
        answered.await.unwrap_or_else(|_| Err(CounterError("the Redis round trip was dropped".into())))
    }

    /// Runs when a request ends on a single server: queues its deltas for the next round trip
    /// and returns at once. Needs a runtime to start the flush on.
    pub fn settle(self: &Arc<Self>, connection: &Connection, adjustments: Vec<(String, i64)>) {
        // A request dropped outside the runtime (at shutdown) has nobody left to settle for.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            queue.settlements.extend(adjustments);
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            runtime.spawn(Arc::clone(self).flush(connection.clone()));
        }
    }

    /// The flush task: round trips until the queue is empty, then ends.
    async fn flush(self: Arc<Self>, mut connection: Connection) {
        loop {
            let (admissions, settlements) = {
                let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.admissions.is_empty() && queue.settlements.is_empty() {
                    queue.flushing = false;
                    return;
                }
                let admitting = queue.admissions.len().min(MOST_ADMISSIONS);
                let settling = queue.settlements.len().min(MOST_SETTLEMENTS);
                let admissions: Vec<Waiting> = queue.admissions.drain(..admitting).collect();
                let settlements: Vec<(String, i64)> = queue.settlements.drain(..settling).collect();
                (admissions, settlements)
            };
            let asked: Vec<&[Reservation]> = admissions.iter().map(|w| w.reservations.as_slice()).collect();
            let answers = self.round_trip(&mut connection, &settlements, &asked).await;
            drop(asked);
            match answers {
                Ok(answers) => {
                    for (waiting, answer) in admissions.into_iter().zip(answers) {
                        self.answer(waiting, Ok(answer));
                    }
                }
                Err(error) => {
                    if !settlements.is_empty() {
                        tracing::debug!(%error, "rate limit settlements did not reach Redis");
                    }
                    for waiting in admissions {
                        let _ = waiting.answer.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// Hands an admission its answer. One whose request is gone (it gave up waiting, or its
    /// client left) gets its reservation back, or it would stay spent until its window ends.
    fn answer(&self, waiting: Waiting, answer: Result<Answer, CounterError>) {
        let Err(Ok(answer)) = waiting.answer.send(answer) else { return };
        if answer.first() == Some(&1) {
            let grants = answer.iter().skip(1 + waiting.reservations.len()).chain(std::iter::repeat(&0));
            let refund =
                waiting.reservations.into_iter().zip(grants).map(|(r, grant)| (r.key, -(r.cost as i64) - grant));
            let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // The flush task running this takes them on its next turn.
            queue.settlements.extend(refund);
        }
    }

    /// One script call: `settlements` applied, then each of `admissions` answered in order.
    pub async fn round_trip(
        &self,
        connection: &mut Connection,
        settlements: &[(String, i64)],
        admissions: &[&[Reservation]],
    ) -> Result<Vec<Answer>, CounterError> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(settlements.len());
        for (key, delta) in settlements {
            invocation.key(key).arg(*delta);
        }
        for reservations in admissions {
            invocation.arg(reservations.len());
            for r in *reservations {
                invocation.key(&r.key).arg(r.limit).arg(r.ttl_ms).arg(r.cost).arg(u8::from(r.gauge)).arg(r.ask);
            }
        }
        let call = connection.invoke::<Vec<Answer>>(&invocation);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answers)) if answers.len() == admissions.len() => Ok(answers),
            Ok(Ok(answers)) => {
                Err(CounterError(format!("Redis answered {} of {} admissions", answers.len(), admissions.len())))
            }
            Ok(Err(error)) => Err(CounterError(error.to_string())),
            Err(_) => Err(CounterError("timed out waiting for Redis".into())),
        }
    }
}
