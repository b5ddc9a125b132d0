import { setTimeout as sleep } from 'node:timers/promises'
import { SdkError, SdkErrorCode, type CallToolResult, type Client } from '@modelcontextprotocol/client'
import { z } from 'zod'

/** How long a `tasks/cancel` may take once the relay has given up waiting for a task. */
const CANCEL_TIMEOUT_MS = 5000
/** Bounds on the server's `pollInterval` (MCP 2025-11-25 "Tasks"): not a busy loop, not a nap past the deadline. */
const MIN_POLL_MS = 100
const MAX_POLL_MS = 5000

export type TaskCallOutcome =
  | { kind: 'result'; result: CallToolResult }
  /** The deadline passed; `cancelled` says whether the server confirmed `tasks/cancel`. */
  | { kind: 'timeout'; cancelled: boolean }

const taskSchema = z
  .object({
    taskId: z.string(),
    status: z.enum(['working', 'input_required', 'completed', 'failed', 'cancelled']),
    statusMessage: z.string().optional(),
    pollInterval: z.number().optional(),
  })
  .loose()
const createTaskResultSchema = z.object({ task: taskSchema }).loose()
const callToolResultSchema = z.object({ content: z.array(z.unknown()).default([]), structuredContent: z.unknown().optional(), isError: z.boolean().optional() }).loose()

/**
 * MCP 2025-11-25 "Tasks" (experimental): calls a tool as a task and awaits its result within
 * `timeoutMs`: task creation (`tools/call` with `task`), `tasks/get` at the server's
 * `pollInterval`, then `tasks/result`. The SDK's 2.x client has no helper for the 2025-11-25
 * task methods (its tasks live in the 2026-07-28 extension), so they are sent as requests with
 * schemas of their own here. Outcomes:
 * - the task completed, or failed with a result of its own: that result (a failed tool's own
 *   words are in it, usually with `isError`);
 * - the deadline passed: the task is cancelled (`tasks/cancel`, bounded) and `timeout` returned;
 * - anything else (the server refused the call, the task was cancelled by the server or asks for
 *   input the relay cannot give, a transport failure): thrown, as `client.callTool` throws.
 */
export async function callToolAsTask(
  client: Client,
  params: { name: string; arguments: Record<string, unknown> },
  timeoutMs: number,
): Promise<TaskCallOutcome> {
  const deadline = Date.now() + timeoutMs
  const left = () => deadline - Date.now()
  const created = await client.request({ method: 'tools/call', params: { ...params, task: {} } }, createTaskResultSchema, { timeout: timeoutMs })
  let task = created.task
  for (;;) {
    if (task.status === 'completed' || task.status === 'failed') {
      const result = await client.request({ method: 'tasks/result', params: { taskId: task.taskId } }, callToolResultSchema, { timeout: Math.max(left(), 1) })
      return { kind: 'result', result: result as CallToolResult }
    }
    if (task.status === 'cancelled') throw new Error(`the server cancelled the task for ${params.name}${task.statusMessage ? `: ${task.statusMessage}` : ''}`)
    if (task.status === 'input_required') throw new Error(`the task for ${params.name} asks for input, which the relay cannot give to a 2025-era task`)
    // Polling is what the revision asks for: the server names the pace, within our bounds.
    await sleep(Math.min(Math.max(task.pollInterval ?? 1000, MIN_POLL_MS), MAX_POLL_MS, Math.max(left(), 0)))
    const next = left() > 0 ? await taskStatus(client, task.taskId, left()) : undefined
    if (!next) return { kind: 'timeout', cancelled: await cancelTask(client, task.taskId) }
    task = next
  }
}

/** The task's status, or undefined when the deadline passed before the server answered. */
async function taskStatus(client: Client, taskId: string, timeoutMs: number): Promise<z.output<typeof taskSchema> | undefined> {
  try {
    return await client.request({ method: 'tasks/get', params: { taskId } }, taskSchema, { timeout: timeoutMs })
  } catch (error) {
    if (error instanceof SdkError && error.code === SdkErrorCode.RequestTimeout) return undefined
    throw error
  }
}

async function cancelTask(client: Client, taskId: string): Promise<boolean> {
  try {
    await client.request({ method: 'tasks/cancel', params: { taskId } }, z.object({}).loose(), { timeout: CANCEL_TIMEOUT_MS })
    return true
  } catch {
    // The caller answers TIMEOUT either way; a task the server would not cancel ends at its own ttl.
    return false
  }
}
