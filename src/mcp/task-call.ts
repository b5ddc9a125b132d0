import type { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { CallToolResultSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js'

/** How long a `tasks/cancel` may take once the relay has given up waiting for a task. */
const CANCEL_TIMEOUT_MS = 5000

export type TaskCallOutcome =
  | { kind: 'result'; result: CallToolResult }
  /** The deadline passed; `cancelled` says whether the server confirmed `tasks/cancel`. */
  | { kind: 'timeout'; cancelled: boolean }

/**
 * MCP 2025-11-25 "Tasks" (experimental): calls a tool as a task and awaits its result within
 * `timeoutMs`, through the SDK's `callToolStream` (task creation, `tasks/get` polling at the
 * server's `pollInterval`, `tasks/result`). Outcomes:
 * - the task completed, or failed with a result of its own: that result (a failed tool's own
 *   words are in it, usually with `isError`);
 * - the deadline passed: the task is cancelled (`tasks/cancel`, bounded) and `timeout` returned;
 * - anything else (the server refused the call, the task was cancelled by the server, a
 *   transport failure): thrown, as `client.callTool` throws.
 */
export async function callToolAsTask(
  client: Client,
  params: { name: string; arguments: Record<string, unknown> },
  timeoutMs: number,
): Promise<TaskCallOutcome> {
  const abort = new AbortController()
  // `task: {}` asks for task augmentation whatever this Client has seen of the tool list: the
  // relay knows from its cached list, which this pooled Client may never have fetched itself.
  const stream = client.experimental.tasks.callToolStream(params, CallToolResultSchema, { task: {}, signal: abort.signal, timeout: timeoutMs })
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'deadline'>((resolve) => {
    timer = setTimeout(() => resolve('deadline'), timeoutMs)
  })
  let taskId: string | undefined
  let lastStatus: string | undefined
  try {
    for (;;) {
      const next = await Promise.race([stream.next(), deadline])
      if (next === 'deadline') {
        abort.abort()
        return { kind: 'timeout', cancelled: taskId !== undefined && (await cancelTask(client, taskId)) }
      }
      if (next.done) throw new Error(`the task for ${params.name} ended without a result`)
      const message = next.value
      switch (message.type) {
        case 'taskCreated':
          taskId = message.task.taskId
          break
        case 'taskStatus':
          lastStatus = message.task.status
          break
        case 'result':
          return { kind: 'result', result: message.result as CallToolResult }
        case 'error':
          // The SDK reports a failed task as "Task … failed"; the server's own words are its result.
          if (lastStatus === 'failed' && taskId !== undefined) {
            const result = await client.experimental.tasks.getTaskResult(taskId, CallToolResultSchema, { timeout: timeoutMs })
            return { kind: 'result', result }
          }
          throw message.error
      }
    }
  } finally {
    clearTimeout(timer)
    // Ends the generator once its pending step settles (the abort above makes that prompt).
    void stream.return(undefined)
  }
}

async function cancelTask(client: Client, taskId: string): Promise<boolean> {
  try {
    await client.experimental.tasks.cancelTask(taskId, { timeout: CANCEL_TIMEOUT_MS })
    return true
  } catch {
    // The caller answers TIMEOUT either way; a task the server would not cancel ends at its own ttl.
    return false
  }
}
