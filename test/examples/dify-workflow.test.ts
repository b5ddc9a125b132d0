// examples/dify-workflow.yml, the Dify DSL users import. Two checks: its shape (the three routes,
// user_id bound to {{#sys.user_id#}}, every reference resolvable), and runs of it against a real
// relay by a small interpreter of the node types it uses, one run per chat turn: HTTP requests are
// sent, Python code nodes run under python3, if/else branches are taken, variable assigners write
// the conversation's variables, which the next turn reads; only the model's replies are scripted.
import { spawn, type ChildProcessByStdio } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { createInterface } from 'node:readline'
import type { Readable, Writable } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { startAnsweringServer, type AnsweringServer } from '../peers/answering-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startModernUpstream, type ModernUpstream } from '../peers/modern-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

interface DslNode {
  id: string
  data: { type: string; title: string; [key: string]: any }
}
interface DslEdge {
  source: string
  sourceHandle: string
  target: string
  data: { sourceType: string; targetType: string }
}
interface DslVariable {
  name: string
  value: unknown
  value_type: string
  selector: string[]
}
interface Dsl {
  kind: string
  version: string
  app: { mode: string }
  workflow: {
    environment_variables: DslVariable[]
    conversation_variables: DslVariable[]
    graph: { nodes: DslNode[]; edges: DslEdge[] }
  }
}
type Selector = [string, string]

const dsl = parse(readFileSync(resolve(import.meta.dirname, '../../examples/dify-workflow.yml'), 'utf8')) as Dsl
const { nodes, edges } = dsl.workflow.graph
const nodeById = new Map(nodes.map((node) => [node.id, node]))
const conversationVariables = new Map(dsl.workflow.conversation_variables.map((variable) => [variable.name, variable]))
const REFERENCE = /\{\{#([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)#\}\}/g
const SYSTEM_VARIABLES = ['user_id', 'query']

/** Every `{{#scope.variable#}}` in a node's data, as [scope, variable]. */
function referencesIn(value: unknown): Selector[] {
  return [...JSON.stringify(value).matchAll(REFERENCE)].map((match) => [match[1]!, match[2]!])
}

/** Every value selector a node reads or writes outside its templates. */
function selectorsIn(node: DslNode): Selector[] {
  const { data } = node
  switch (data.type) {
    case 'code':
      return data.variables.map((variable: { value_selector: Selector }) => variable.value_selector)
    case 'if-else':
      return data.cases.flatMap((branch: { conditions: Array<{ variable_selector: Selector }> }) => branch.conditions.map((condition) => condition.variable_selector))
    case 'assigner':
      return data.items.flatMap((item: { variable_selector: Selector; input_type: string; value: Selector }) =>
        item.input_type === 'variable' ? [item.variable_selector, item.value] : [item.variable_selector],
      )
    case 'variable-aggregator':
      return data.variables
    default:
      return []
  }
}

/** What a node of the example outputs, by Dify's node types (an assigner outputs nothing). */
function outputsOf(node: DslNode): string[] {
  switch (node.data.type) {
    case 'http-request':
      return ['status_code', 'body', 'headers', 'files']
    case 'code':
      return Object.keys(node.data.outputs)
    case 'llm':
      return ['text']
    case 'variable-aggregator':
      return ['output']
    default:
      return []
  }
}

const httpNodes = nodes.filter((node) => node.data.type === 'http-request')
const routeOf = (node: DslNode) => /^\{\{#env\.RELAY_URL#\}\}(\/tools\/[a-z-]+)$/.exec(node.data.url)?.[1]
const next = (id: string, handle = 'source') => edges.filter((edge) => edge.source === id && edge.sourceHandle === handle).map((edge) => edge.target)

describe('examples/dify-workflow.yml: shape', () => {
  it('is a Dify app DSL for a Chatflow', () => {
    expect(dsl.kind).toBe('app')
    expect(dsl.version).toMatch(/^\d+\.\d+\.\d+$/)
    expect(dsl.app.mode).toBe('advanced-chat')
  })

  it('calls only the three tool routes, as the person chatting, with the API key from a secret variable', () => {
    expect(httpNodes.map(routeOf).sort()).toEqual(['/tools/auth-status', '/tools/call-tool', '/tools/call-tool', '/tools/list-tools'])
    for (const node of httpNodes) {
      expect(node.data.method, node.id).toBe('post')
      expect(node.data.authorization, node.id).toEqual({ type: 'api-key', config: { type: 'bearer', api_key: '{{#env.RELAY_API_KEY#}}', header: '' } })
      expect(node.data.body.type, node.id).toBe('json')
      expect(node.data.body.data[0].value, node.id).toMatch(/^\{"user_id": "\{\{#sys\.user_id#\}\}"/)
    }
    const variables = new Map(dsl.workflow.environment_variables.map((variable) => [variable.name, variable]))
    expect(variables.get('RELAY_API_KEY')).toMatchObject({ value_type: 'secret', value: '', selector: ['env', 'RELAY_API_KEY'] })
    expect(variables.get('RELAY_URL')).toMatchObject({ value_type: 'string', selector: ['env', 'RELAY_URL'] })
  })

  it('with no question open, asks auth-status first and branches on all_authorized: login links, or list-tools then call-tool', () => {
    const [first] = next('start')
    const open = nodeById.get(first!)!
    expect(open.data.type).toBe('if-else')
    expect(open.data.cases).toMatchObject([{ case_id: 'true', conditions: [{ comparison_operator: 'not empty', variable_selector: ['conversation', 'pending_input_ref'] }] }])
    const [firstRequest] = next(open.id, 'false')
    expect(routeOf(nodeById.get(firstRequest!)!)).toBe('/tools/auth-status')
    const branch = nodes.find((node) => node.data.type === 'if-else' && node.data.cases[0].conditions[0].variable_selector.join('.') === 'read_status.all_authorized')!
    expect(branch).toBeDefined()
    expect(next(branch.id, 'false').map((id) => nodeById.get(id)!.data.type)).toEqual(['answer'])
    expect(next(branch.id, 'true').map((id) => routeOf(nodeById.get(id)!))).toEqual(['/tools/list-tools'])
  })

  it('keeps the call waiting for answers in string conversation variables, written only by v2 variable assigners', () => {
    expect([...conversationVariables.keys()].sort()).toEqual(['pending_input', 'pending_input_ref', 'pending_questions', 'pending_tool_ref'])
    for (const [name, variable] of conversationVariables) {
      expect(variable, name).toMatchObject({ value: '', value_type: 'string', selector: ['conversation', name] })
    }
    const written = nodes.flatMap((node) => (node.data.type === 'assigner' ? node.data.items.map((item: { variable_selector: Selector }) => item.variable_selector[1]) : []))
    expect(new Set(written)).toEqual(new Set(conversationVariables.keys()))
    for (const node of nodes.filter((candidate) => candidate.data.type === 'assigner')) {
      expect(node.data.version, node.id).toBe('2')
      for (const item of node.data.items) expect(item, node.id).toMatchObject({ input_type: 'variable', operation: 'over-write', variable_selector: ['conversation', expect.any(String)] })
    }
    // The second call-tool carries the waiting call's input_ref and the user's answers.
    const answering = httpNodes.find((node) => routeOf(node) === '/tools/call-tool' && node.data.body.data[0].value.includes('"input_response"'))!
    expect(answering.data.body.data[0].value).toContain('"input_ref": {{#')
    expect(next(nodeById.get(next('start')[0]!)!.id, 'true').map((id) => nodeById.get(id)!.data.type)).toEqual(['llm'])
  })

  it('has no dangling edge or reference, and every node is reachable from the start', () => {
    for (const edge of edges) {
      expect(nodeById.has(edge.source), edge.source).toBe(true)
      expect(nodeById.has(edge.target), edge.target).toBe(true)
      expect(edge.data, `${edge.source} → ${edge.target}`).toEqual({ sourceType: nodeById.get(edge.source)!.data.type, targetType: nodeById.get(edge.target)!.data.type })
    }
    const env = new Set(dsl.workflow.environment_variables.map((variable) => variable.name))
    for (const node of nodes) {
      for (const [scope, name] of [...referencesIn(node.data), ...selectorsIn(node)]) {
        const where = `${node.id}: ${scope}.${name}`
        if (scope === 'env') expect(env, where).toContain(name)
        else if (scope === 'sys') expect(SYSTEM_VARIABLES, where).toContain(name)
        else if (scope === 'conversation') expect(conversationVariables.has(name), where).toBe(true)
        else {
          expect(nodeById.has(scope), where).toBe(true)
          expect(outputsOf(nodeById.get(scope)!), where).toContain(name)
        }
      }
    }
    const reached = new Set(['start'])
    for (let grew = true; grew; ) {
      grew = false
      for (const edge of edges) if (reached.has(edge.source) && !reached.has(edge.target)) grew = Boolean(reached.add(edge.target))
    }
    expect([...reached].sort()).toEqual(nodes.map((node) => node.id).sort())
  })
})

// ——— Runs of the workflow, one per chat turn ———

interface RunContext {
  sys: { user_id: string; query: string }
  env: Record<string, string>
  /** The conversation's variables: what earlier turns' assigners wrote. Written in place. */
  conversation?: Record<string, unknown>
  /** The model of LLM node `nodeId`: gets the rendered prompt messages, returns its reply. */
  llm(messages: Array<{ role: string; text: string }>, nodeId: string): string
}

/** A new conversation's variables: Dify starts each from the DSL's `value`. */
function startConversation(): Record<string, unknown> {
  return Object.fromEntries([...conversationVariables].map(([name, variable]) => [name, structuredClone(variable.value)]))
}

/**
 * Code nodes run under one python3 process for the whole file, each in a namespace of its own
 * (`main(**inputs)`, as Dify's code node calls it): a process per node costs seconds on a loaded
 * machine, and a turn runs up to four code nodes.
 */
const PYTHON_HARNESS = `
import json, sys, traceback
replies, sys.stdout = sys.stdout, sys.stderr  # what a node prints is not its result, as in Dify
for line in sys.stdin:
    request = json.loads(line)
    namespace = {}
    try:
        exec(request["code"], namespace)
        print(json.dumps({"outputs": namespace["main"](**request["inputs"])}), file=replies, flush=True)
    except Exception:
        print(json.dumps({"error": traceback.format_exc()}), file=replies, flush=True)
`
let python: { child: ChildProcessByStdio<Writable, Readable, null>; replies: AsyncIterator<string> } | undefined
afterAll(() => void python?.child.stdin.end())

async function runPython(node: DslNode, inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  if (!python) {
    const child = spawn('python3', ['-c', PYTHON_HARNESS], { stdio: ['pipe', 'pipe', 'inherit'] })
    python = { child, replies: createInterface({ input: child.stdout })[Symbol.asyncIterator]() }
  }
  python.child.stdin.write(`${JSON.stringify({ code: node.data.code, inputs })}\n`)
  let timer: NodeJS.Timeout | undefined
  const reply = await Promise.race([
    python.replies.next(),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // Its reply, if any, would answer the next node's request: start over with a new process.
        python?.child.kill()
        python = undefined
        reject(new Error(`${node.id} ran for more than 10 s`))
      }, 10_000)
    }),
  ]).finally(() => clearTimeout(timer))
  if (reply.done) throw new Error(`python3 ended while running ${node.id}`)
  const { outputs, error } = JSON.parse(reply.value) as { outputs?: Record<string, unknown>; error?: string }
  if (error !== undefined) throw new Error(`${node.id} failed:\n${error}`)
  expect(Object.keys(outputs!).sort(), node.id).toEqual(Object.keys(node.data.outputs).sort())
  for (const [name, declared] of Object.entries(node.data.outputs as Record<string, { type: string }>)) {
    expect(typeof outputs![name], `${node.id}.${name}`).toBe(declared.type)
  }
  return outputs!
}

/** Dify's check of a value against a variable's type (assigner v2 `is_input_value_valid`); the example uses strings only. */
function fitsType(valueType: string, value: unknown): boolean {
  if (valueType !== 'string') throw new Error(`variables of type ${valueType} are not simulated`)
  return typeof value === 'string'
}

async function runWorkflow(context: RunContext): Promise<{ answers: string[]; path: string[] }> {
  const conversation = context.conversation ?? startConversation()
  const outputs = new Map<string, Record<string, unknown>>()
  /** The variable pool: undefined where nothing was written (a node that did not run, this turn). */
  const valueAt = ([scope, name]: Selector): unknown => {
    const source = scope === 'sys' ? context.sys : scope === 'env' ? context.env : scope === 'conversation' ? conversation : outputs.get(scope)
    return source && name in source ? (source as Record<string, unknown>)[name] : undefined
  }
  // Stricter than Dify, which hands a code node None for a variable nothing wrote: here any
  // reference to something not (yet) written fails the run.
  const lookup = (selector: Selector): unknown => {
    const value = valueAt(selector)
    if (value === undefined) throw new Error(`{{#${selector.join('.')}#}} has no value at this point`)
    return value
  }
  const render = (template: string) => template.replace(REFERENCE, (_, scope: string, name: string) => String(lookup([scope, name])))

  const answers: string[] = []
  const path: string[] = []
  let current: DslNode | undefined = nodeById.get('start')
  while (current) {
    const node: DslNode = current
    path.push(node.id)
    let handle = 'source'
    switch (node.data.type) {
      case 'start':
        break
      case 'http-request': {
        const headers: Record<string, string> = { 'content-type': 'application/json' }
        if (node.data.authorization.type === 'api-key') headers.authorization = `Bearer ${render(node.data.authorization.config.api_key)}`
        // Dify renders the JSON body's template, then parses it: a body that is not JSON fails the node.
        const body = JSON.stringify(JSON.parse(render(node.data.body.data[0].value)))
        const response = await fetch(render(node.data.url), {
          method: node.data.method.toUpperCase(),
          headers,
          body,
          signal: AbortSignal.timeout(20_000),
        })
        // No error strategy and no retry configured: a 4xx answer is this node's output, not a failure.
        expect(node.data.error_strategy, node.id).toBeUndefined()
        outputs.set(node.id, { status_code: response.status, body: await response.text() })
        break
      }
      case 'code': {
        const inputs = Object.fromEntries(
          (node.data.variables as Array<{ variable: string; value_selector: Selector }>).map((variable) => [variable.variable, lookup(variable.value_selector)]),
        )
        outputs.set(node.id, await runPython(node, inputs))
        break
      }
      case 'if-else': {
        const holds = (condition: { comparison_operator: string; value: string; variable_selector: Selector }) => {
          const value = lookup(condition.variable_selector)
          switch (condition.comparison_operator) {
            case 'is':
              return String(value) === condition.value
            case 'not empty':
              return value !== undefined && value !== null && value !== ''
            default:
              throw new Error(`${node.id}: operator ${condition.comparison_operator} is not simulated`)
          }
        }
        const chosen = (node.data.cases as Array<{ case_id: string; logical_operator: 'and' | 'or'; conditions: any[] }>).find((candidate) =>
          candidate.logical_operator === 'and' ? candidate.conditions.every(holds) : candidate.conditions.some(holds),
        )
        handle = chosen?.case_id ?? 'false'
        break
      }
      case 'llm': {
        const messages = (node.data.prompt_template as Array<{ role: string; text: string }>).map((message) => ({ role: message.role, text: render(message.text) }))
        outputs.set(node.id, { text: context.llm(messages, node.id) })
        break
      }
      case 'variable-aggregator': {
        // Dify: the first listed variable that holds a value (branches not taken hold none) is `output`.
        expect(node.data.advanced_settings?.group_enabled ?? false, `${node.id}: groups are not simulated`).toBe(false)
        const value = (node.data.variables as Selector[]).map(valueAt).find((candidate) => candidate !== undefined && candidate !== null)
        if (value !== undefined) expect(fitsType(node.data.output_type, value), `${node.id}: ${node.data.output_type}`).toBe(true)
        outputs.set(node.id, value === undefined ? {} : { output: value })
        break
      }
      case 'assigner': {
        // Variable assigner v2, over conversation variables: every item is checked before any is
        // written (one bad item fails the node and writes nothing); written values are seen by
        // the rest of this turn and kept for the next.
        expect(node.data.version, node.id).toBe('2')
        const writes: Array<[string, unknown]> = []
        for (const item of node.data.items as Array<{ variable_selector: Selector; input_type: string; operation: string; value: unknown }>) {
          const [scope, name] = item.variable_selector
          const declared = conversationVariables.get(name)
          if (scope !== 'conversation' || !declared) throw new Error(`${node.id}: ${item.variable_selector.join('.')} is not a conversation variable`)
          if (item.operation !== 'over-write' || item.input_type !== 'variable') throw new Error(`${node.id}: ${item.operation} with ${item.input_type} input is not simulated`)
          const value = lookup(item.value as Selector)
          if (value === null) continue // Dify skips an item whose source holds None
          if (!fitsType(declared.value_type, value)) throw new Error(`${node.id}: ${JSON.stringify(value)} is not a valid value for ${declared.value_type} ${name}`)
          writes.push([name, value])
        }
        for (const [name, value] of writes) conversation[name] = value
        break
      }
      case 'answer':
        answers.push(render(node.data.answer))
        break
      default:
        throw new Error(`node type ${node.data.type} is not simulated`)
    }
    const following = edges.filter((edge) => edge.source === node.id && edge.sourceHandle === handle)
    // One path per turn: no node of the example starts parallel branches.
    expect(following.length, `${node.id} → ${handle}`).toBeLessThanOrEqual(1)
    current = following[0] && nodeById.get(following[0].target)
  }
  return { answers, path }
}

describe('examples/dify-workflow.yml: a run against the relay', () => {
  let as: AuthorizationServer
  let docs: McpUpstream
  let relay: TestRelay
  let env: Record<string, string>

  beforeAll(async () => {
    as = await startAuthorizationServer()
    docs = await startMcpUpstream({ auth: { issuer: as.issuer } })
    relay = await startRelay({
      servers: [{ server_id: 'docs', description: 'Internal docs', mcp_url: docs.url }],
      env: { OAUTH_TRUSTED_HOSTS: new URL(as.url).host },
    })
    env = { RELAY_URL: relay.url, RELAY_API_KEY: relay.apiKey }
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([docs?.close(), as?.close()])
  })

  const noModel = () => {
    throw new Error('the model is not asked before the user is signed in')
  }
  const CALL_PATH = ['start', 'has_pending', 'auth_status', 'read_status', 'signed_in', 'list_tools', 'choose_tool', 'read_choice', 'has_tool', 'remember_call', 'call_tool', 'pick_answer', 'read_result', 'remember', 'answer']

  it('a user who has not signed in gets the login links, and nothing is listed or called', async () => {
    const run = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'who am I?' }, env, llm: noModel })
    expect(run.path).toEqual(['start', 'has_pending', 'auth_status', 'read_status', 'signed_in', 'ask_sign_in'])
    expect(run.answers).toHaveLength(1)
    expect(run.answers[0]).toMatch(/^Please sign in first/)
    expect(run.answers[0]).toMatch(new RegExp(`^- \\[Internal docs\\]\\(${relay.url}/oauth/start/[A-Za-z0-9_-]+\\)$`, 'm'))
  })

  it('after signing in, the model picks a tool from the list and the answer is the tool\'s result for that user', async () => {
    const first = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'who am I?' }, env, llm: noModel })
    const loginUrl = /\((http[^)]+)\)/.exec(first.answers[0]!)![1]!
    expect((await signInThroughBrowser(loginUrl, 'dify-user-1')).status).toBe(200)

    let prompt = ''
    const conversation = startConversation()
    const run = await runWorkflow({
      sys: { user_id: 'dify-user-1', query: 'who am I?' },
      env,
      conversation,
      llm(messages) {
        prompt = messages.map((message) => message.text).join('\n')
        return 'Here you go:\n```json\n{"tool_ref": "docs::whoami", "input": {}}\n```'
      },
    })
    expect(prompt).toContain('"tool_ref":"docs::whoami"')
    expect(prompt).toContain('who am I?')
    expect(run.path).toEqual(CALL_PATH)
    expect(JSON.parse(run.answers[0]!)).toMatchObject({ sub: 'dify-user-1' })
    // A finished call leaves nothing waiting.
    expect(conversation).toEqual(startConversation())

    // Input with quotes and non-ASCII text reaches the tool intact.
    const echo = await runWorkflow({
      sys: { user_id: 'dify-user-1', query: 'repeat' },
      env,
      llm: () => '{"tool_ref": "docs::echo", "input": {"text": "say \\"hi\\" — ünï"}}',
    })
    expect(echo.answers).toEqual(['say "hi" — ünï'])
  })

  it('answers plainly when no tool fits, and passes a tool\'s own error on', async () => {
    const none = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'make coffee' }, env, llm: () => 'Sorry, none of these tools can do that.' })
    expect(none.path.at(-1)).toBe('no_tool')
    expect(none.answers).toEqual(['None of your connected tools fits this request.'])

    const failed = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'fail' }, env, llm: () => '{"tool_ref": "docs::fail", "input": {}}' })
    expect(failed.answers).toEqual(['The tool reported an error:\nthis tool always fails'])

    const unknown = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'x' }, env, llm: () => '{"tool_ref": "docs::nope", "input": {}}' })
    expect(unknown.answers[0]).toContain('has no tool named "nope"')
  })

  it('says the relay refused the request when the API key is wrong', async () => {
    const run = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'x' }, env: { ...env, RELAY_API_KEY: 'wrong-key-0123456789' }, llm: noModel })
    expect(run.answers).toEqual(['The relay refused the request: the API key is not valid'])
  })
})

describe('examples/dify-workflow.yml: questions through the chat, across turns (a 2026-07-28 server beside a 2025-era one)', () => {
  let modern: ModernUpstream
  let legacy: AnsweringServer
  let relay: TestRelay
  let env: Record<string, string>

  beforeAll(async () => {
    ;[modern, legacy] = await Promise.all([startModernUpstream(), startAnsweringServer()])
    relay = await startRelay({
      servers: [
        { server_id: 'modern', description: 'A 2026-07-28 server', mcp_url: modern.url },
        { server_id: 'legacy', description: 'A 2025-era server', mcp_url: legacy.url },
      ],
    })
    env = { RELAY_URL: relay.url, RELAY_API_KEY: relay.apiKey }
  })

  afterAll(async () => {
    await relay?.close()
    await Promise.all([modern?.close(), legacy?.close()])
  })

  const FIRST_TURN = ['start', 'has_pending', 'auth_status', 'read_status', 'signed_in', 'list_tools', 'choose_tool', 'read_choice', 'has_tool', 'remember_call', 'call_tool', 'pick_answer', 'read_result', 'remember', 'answer']
  const ANSWER_TURN = ['start', 'has_pending', 'fill_answers', 'read_answers', 'answer_call', 'pick_answer', 'read_result', 'remember', 'answer']
  const GREET_QUESTIONS = 'To continue, greet needs your answers:\n\n**What is your name?**\n- Your name: text, required\n\nAnswer in your own words (or tell me if you would rather not).'

  /** One turn of `user`'s conversation: the model picks `choice` in the first turn, reads `reply` into answers later. */
  async function turn(conversation: Record<string, unknown>, query: string, model: { choice?: string; answers?: string }, prompts: string[] = []) {
    return runWorkflow({
      sys: { user_id: 'dify-user-2', query },
      env,
      conversation,
      llm(messages, nodeId) {
        prompts.push(messages.map((message) => message.text).join('\n'))
        const reply = nodeId === 'choose_tool' ? model.choice : nodeId === 'fill_answers' ? model.answers : undefined
        if (reply === undefined) throw new Error(`the model of ${nodeId} was not expected in this turn`)
        return reply
      },
    })
  }
  const lastCall = (tool: string) => modern.seen.filter((seen) => seen.mcpName === tool).at(-1)!

  it('shows the server\'s questions, keeps the call in conversation variables, and sends the user\'s answer with its input_ref', async () => {
    const conversation = startConversation()
    const asked = await turn(conversation, 'Greet me formally', { choice: '{"tool_ref": "modern::greet", "input": {"formal": true}}' })
    expect(asked.path).toEqual(FIRST_TURN)
    expect(asked.answers).toEqual([GREET_QUESTIONS])
    expect(conversation).toEqual({
      pending_input_ref: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      pending_tool_ref: 'modern::greet',
      pending_input: '{"formal": true}',
      pending_questions: expect.any(String),
    })
    expect(JSON.parse(conversation.pending_questions as string)).toEqual([
      { key: 'name', kind: 'form', message: 'What is your name?', fields: { name: { type: 'string', title: 'Your name', minLength: 1 } }, required: ['name'] },
    ])

    const prompts: string[] = []
    const answered = await turn(conversation, "It's Zed.", { answers: '{"name": {"name": "Zed"}}' }, prompts)
    expect(answered.path).toEqual(ANSWER_TURN)
    expect(prompts).toHaveLength(1)
    expect(prompts[0]).toContain('"message": "What is your name?"')
    expect(prompts[0]).toContain("It's Zed.")
    expect(answered.answers).toEqual(['Good day, Zed!'])
    expect(lastCall('greet')).toMatchObject({ requestState: 'greet-round-1', inputResponses: { name: { action: 'accept', content: { name: 'Zed' } } } })
    expect(conversation).toEqual(startConversation())
  })

  it('sends "decline" when the user would rather not answer, and the next message starts afresh', async () => {
    const conversation = startConversation()
    await turn(conversation, 'Greet me', { choice: '{"tool_ref": "modern::greet", "input": {}}' })
    const declined = await turn(conversation, "I'd rather not say", { answers: '{"name": "decline"}' })
    expect(declined.answers).toEqual(['The tool reported an error:\nThe user chose decline.'])
    expect(lastCall('greet').inputResponses).toEqual({ name: { action: 'decline' } })
    expect(conversation).toEqual(startConversation())

    const again = await turn(conversation, 'Echo hi', { choice: '{"tool_ref": "modern::echo", "input": {"text": "hi"}}' })
    expect(again.path).toEqual(FIRST_TURN)
    expect(again.answers).toEqual(['hi'])
  })

  it('asks again when an answer does not fit, keeping the same input_ref, and the next answer goes through', async () => {
    const conversation = startConversation()
    await turn(conversation, 'Greet me', { choice: '{"tool_ref": "modern::greet", "input": {}}' })
    const waiting = { ...conversation }
    const misfit = await turn(conversation, 'Guess', { answers: '{"name": {}}' })
    expect(misfit.answers).toEqual([`I could not use that answer (input_response.name: is required).\n\n${GREET_QUESTIONS}`])
    expect(conversation).toEqual(waiting)

    const answered = await turn(conversation, 'Zed', { answers: '{"name": {"name": "Zed"}}' })
    expect(answered.answers).toEqual(['Hello, Zed!'])
    expect(conversation).toEqual(startConversation())
  })

  it('asks several questions at once, each field with its allowed values, and sends the answers by question key', async () => {
    const conversation = startConversation()
    const asked = await turn(conversation, 'Paint something', { choice: '{"tool_ref": "modern::paint", "input": {}}' })
    expect(asked.answers).toEqual([
      'To continue, paint needs your answers:\n\n' +
        '**Who is painting?**\n- Your name: text, required\n\n' +
        '**Which colour?**\n- colour: one of red, green, blue, required\n- shade: a whole number from 1 to 9\n\n' +
        'Answer in your own words (or tell me if you would rather not).',
    ])
    const painted = await turn(conversation, 'Ada, in green, shade 3', { answers: '{"name": {"name": "Ada"}, "colour": {"colour": "green", "shade": 3}}' })
    expect(painted.answers).toEqual(['Ada paints in green shade 3.'])
    expect(lastCall('paint').inputResponses).toEqual({ name: { action: 'accept', content: { name: 'Ada' } }, colour: { action: 'accept', content: { colour: 'green', shade: 3 } } })
  })

  it('shows a page to open as a link, and continues the call once the user says they are done', async () => {
    const conversation = startConversation()
    const asked = await turn(conversation, 'Export it', { choice: '{"tool_ref": "modern::consent", "input": {}}' })
    expect(asked.answers).toEqual(['To continue, open [this page](https://consent.example.com/approve?id=7) and finish there. Tell me when you are done, or say no to skip it.'])
    expect(conversation.pending_input_ref).not.toBe('')
    const done = await turn(conversation, 'Done!', { answers: '{"page": "accept"}' })
    expect(done.answers).toEqual(['Approved.'])
    expect(conversation).toEqual(startConversation())
  })

  it('shows a 2025-era server\'s page to open (no input_ref) as a link to finish before asking again, and keeps nothing waiting', async () => {
    const conversation = startConversation()
    const asked = await turn(conversation, 'My calendar', { choice: '{"tool_ref": "legacy::needs-consent", "input": {"url": "https://calendar.example.com/consent"}}' })
    expect(asked.answers).toEqual(['To continue, open [this page](https://calendar.example.com/consent) and finish there. Then send your request again.'])
    expect(conversation).toEqual(startConversation())
  })

  it('drops a question that was answered elsewhere (or expired) and says to ask again', async () => {
    const conversation = startConversation()
    await turn(conversation, 'Greet me', { choice: '{"tool_ref": "modern::greet", "input": {}}' })
    // The same user answers it through the relay directly, as another chat window would: the input_ref is used up.
    const elsewhere = await relay.post('/tools/call-tool', { user_id: 'dify-user-2', tool_ref: 'modern::greet', input: {}, input_ref: conversation.pending_input_ref, input_response: { name: 'Eve' } })
    expect(elsewhere.body).toMatchObject({ ok: true })
    const late = await turn(conversation, 'Zed', { answers: '{"name": {"name": "Zed"}}' })
    expect(late.answers).toEqual(['That question is no longer open (it can be answered once, within 10 minutes). Please send your request again.'])
    expect(conversation).toEqual(startConversation())
  })
})
