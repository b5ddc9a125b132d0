// Preloaded into a relay process (`node --import`) by tests that must show the relay never stalls:
// how long its event loop went without coming back to timers, measured in the main thread's own
// CPU time, reported over the IPC channel when the parent asks.
//
// Why CPU time and not the event-loop delay itself (perf_hooks.monitorEventLoopDelay, prom-client's
// nodejs_eventloop_lag_max_seconds): the delay is wall time, and on a shared 2-core machine at load
// 15-20 (this project's CI and development machines) an idle relay already shows delays of 50-150 ms,
// because the scheduler runs other processes, not because the relay does anything. The main thread's
// CPU time spent between two ticks of a 5 ms timer is the work the loop did without yielding (a long
// JSON.parse, a serialization, a regular expression, a garbage collection of its own heap): a health
// probe arriving then waits behind exactly that, on an idle machine as wall time too. So "at most
// 200 ms" holds or fails because of the relay's own code, whatever else the machine is doing.
// The wall-time delay is reported beside it, for the record.

interface LoopStats {
  /** The longest main-thread CPU time between two timer ticks, since the last read (ms). */
  maxBlockedCpuMs: number
  /** The longest wall time between two ticks beyond the timer's own period, since the last read (ms). */
  maxDelayMs: number
  ticks: number
}

const PERIOD_MS = 5

let stats: LoopStats = { maxBlockedCpuMs: 0, maxDelayMs: 0, ticks: 0 }
let lastCpu = process.threadCpuUsage()
let lastWall = performance.now()

const timer = setInterval(() => {
  const cpu = process.threadCpuUsage(lastCpu)
  const wall = performance.now()
  stats.maxBlockedCpuMs = Math.max(stats.maxBlockedCpuMs, (cpu.user + cpu.system) / 1000)
  stats.maxDelayMs = Math.max(stats.maxDelayMs, wall - lastWall - PERIOD_MS)
  stats.ticks++
  lastCpu = process.threadCpuUsage()
  lastWall = wall
}, PERIOD_MS)
timer.unref()

// `{ read: id }` answers `{ read: id, stats }` and starts the next window.
process.on('message', (message: { read?: number }) => {
  if (typeof message?.read !== 'number') return
  process.send?.({ read: message.read, stats })
  stats = { maxBlockedCpuMs: 0, maxDelayMs: 0, ticks: 0 }
})
// The IPC channel must not keep a relay that was told to stop alive.
process.channel?.unref()
