// examples/dify-workflow.yml, the Dify DSL users import. Two checks: its shape (the three routes,
// user_id bound to {{#sys.user_id#}}, every reference resolvable), and a run of it against a real
// relay by a small interpreter of the node types it uses: HTTP requests are sent, Python code
// nodes run under python3, if/else branches are taken; only the model's reply is scripted.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { startAuthorizationServer, type AuthorizationServer } from '../peers/authorization-server.ts'
import { signInThroughBrowser } from '../peers/browser.ts'
import { startMcpUpstream, type McpUpstream } from '../peers/mcp-upstream.ts'
import { startRelay, type TestRelay } from '../support/relay.ts'

interface DslNode {
  id: string
  data: { type: string; title: string; [key: string]: any }
}
interface DslEdge {
  source: string
  sourceHandle: string
  target: string
}
interface Dsl {
  kind: string
  version: string
  app: { mode: string }
  workflow: {
    environment_variables: Array<{ name: string; value: string; value_type: string; selector: string[] }>
    graph: { nodes: DslNode[]; edges: DslEdge[] }
  }
}

const dsl = parse(readFileSync(resolve(import.meta.dirname, '../../examples/dify-workflow.yml'), 'utf8')) as Dsl
const { nodes, edges } = dsl.workflow.graph
const nodeById = new Map(nodes.map((node) => [node.id, node]))
const REFERENCE = /\{\{#([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)#\}\}/g

/** Every `{{#node.variable#}}` in a node's data, as [node, variable]. */
function referencesIn(value: unknown): Array<[string, string]> {
  return [...JSON.stringify(value).matchAll(REFERENCE)].map((match) => [match[1]!, match[2]!])
}

const httpNodes = nodes.filter((node) => node.data.type === 'http-request')
const routeOf = (node: DslNode) => /^\{\{#env\.RELAY_URL#\}\}(\/tools\/[a-z-]+)$/.exec(node.data.url)?.[1]

describe('examples/dify-workflow.yml: shape', () => {
  it('is a Dify app DSL for a Chatflow', () => {
    expect(dsl.kind).toBe('app')
    expect(dsl.version).toMatch(/^\d+\.\d+\.\d+$/)
    expect(dsl.app.mode).toBe('advanced-chat')
  })

  it('calls the three tool routes as the person chatting, with the API key from a secret variable', () => {
    expect(httpNodes.map(routeOf).sort()).toEqual(['/tools/auth-status', '/tools/call-tool', '/tools/list-tools'])
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

  it('asks auth-status first and branches on all_authorized: login links, or list-tools then call-tool', () => {
    const next = (id: string, handle = 'source') => edges.filter((edge) => edge.source === id && edge.sourceHandle === handle).map((edge) => edge.target)
    const [first] = next('start')
    expect(routeOf(nodeById.get(first!)!)).toBe('/tools/auth-status')
    const branch = nodes.find((node) => node.data.type === 'if-else' && referencesIn(node.data.cases).length === 0 &&
      node.data.cases[0].conditions[0].variable_selector.join('.') === 'read_status.all_authorized')!
    expect(branch).toBeDefined()
    expect(next(branch.id, 'false').map((id) => nodeById.get(id)!.data.type)).toEqual(['answer'])
    expect(next(branch.id, 'true').map((id) => routeOf(nodeById.get(id)!))).toEqual(['/tools/list-tools'])
  })

  it('has no dangling edge or reference, and every node is reachable from the start', () => {
    for (const edge of edges) {
      expect(nodeById.has(edge.source), edge.source).toBe(true)
      expect(nodeById.has(edge.target), edge.target).toBe(true)
    }
    const env = new Set(dsl.workflow.environment_variables.map((variable) => variable.name))
    for (const node of nodes) {
      for (const [scope, name] of referencesIn(node.data)) {
        if (scope === 'env') expect(env, `${node.id}: env.${name}`).toContain(name)
        else if (scope === 'sys') expect(['user_id', 'query'], `${node.id}: sys.${name}`).toContain(name)
        else expect(nodeById.has(scope), `${node.id}: ${scope}.${name}`).toBe(true)
      }
      for (const variable of node.data.variables ?? []) {
        if (variable.value_selector) expect(nodeById.has(variable.value_selector[0]), `${node.id}: ${variable.value_selector}`).toBe(true)
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

// ——— A run of the workflow ———

interface RunContext {
  sys: { user_id: string; query: string }
  env: Record<string, string>
  /** The model: gets the rendered prompt messages, returns its reply. */
  llm(messages: Array<{ role: string; text: string }>): string
}

/** Runs `code`'s main(**inputs) under python3 as Dify's code node does; checks the declared outputs. */
async function runPython(node: DslNode, inputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  const harness = 'import json, sys\nnamespace = {}\nexec(sys.argv[1], namespace)\nprint(json.dumps(namespace["main"](**json.loads(sys.stdin.readline()))))'
  const child = promisify(execFile)('python3', ['-c', harness, node.data.code], { timeout: 10_000 })
  child.child.stdin!.end(`${JSON.stringify(inputs)}\n`)
  const outputs = JSON.parse((await child).stdout) as Record<string, unknown>
  expect(Object.keys(outputs).sort(), node.id).toEqual(Object.keys(node.data.outputs).sort())
  for (const [name, declared] of Object.entries(node.data.outputs as Record<string, { type: string }>)) {
    expect(typeof outputs[name], `${node.id}.${name}`).toBe(declared.type)
  }
  return outputs
}

async function runWorkflow(context: RunContext): Promise<{ answers: string[]; path: string[] }> {
  const outputs = new Map<string, Record<string, unknown>>()
  const lookup = (scope: string, name: string): unknown => {
    const source = scope === 'sys' ? context.sys : scope === 'env' ? context.env : outputs.get(scope)
    if (!source || !(name in source)) throw new Error(`{{#${scope}.${name}#}} has no value at this point`)
    return (source as Record<string, unknown>)[name]
  }
  const render = (template: string) => template.replace(REFERENCE, (_, scope: string, name: string) => String(lookup(scope, name)))

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
        outputs.set(node.id, { status_code: response.status, body: await response.text() })
        break
      }
      case 'code': {
        const inputs = Object.fromEntries(
          (node.data.variables as Array<{ variable: string; value_selector: [string, string] }>).map((variable) => [
            variable.variable,
            lookup(...variable.value_selector),
          ]),
        )
        outputs.set(node.id, await runPython(node, inputs))
        break
      }
      case 'if-else': {
        const holds = (condition: { comparison_operator: string; value: string; variable_selector: [string, string] }) => {
          const value = lookup(...condition.variable_selector)
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
        outputs.set(node.id, { text: context.llm(messages) })
        break
      }
      case 'answer':
        answers.push(render(node.data.answer))
        break
      default:
        throw new Error(`node type ${node.data.type} is not simulated`)
    }
    const next = edges.filter((edge) => edge.source === node.id && edge.sourceHandle === handle)
    expect(next.length, `${node.id} → ${handle}`).toBeLessThanOrEqual(1)
    current = next[0] && nodeById.get(next[0].target)
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

  it('a user who has not signed in gets the login links, and nothing is listed or called', async () => {
    const run = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'who am I?' }, env, llm: noModel })
    expect(run.path).toEqual(['start', 'auth_status', 'read_status', 'signed_in', 'ask_sign_in'])
    expect(run.answers).toHaveLength(1)
    expect(run.answers[0]).toMatch(/^Please sign in first/)
    expect(run.answers[0]).toMatch(new RegExp(`^- \\[Internal docs\\]\\(${relay.url}/oauth/start/[A-Za-z0-9_-]+\\)$`, 'm'))
  })

  it('after signing in, the model picks a tool from the list and the answer is the tool\'s result for that user', async () => {
    const first = await runWorkflow({ sys: { user_id: 'dify-user-1', query: 'who am I?' }, env, llm: noModel })
    const loginUrl = /\((http[^)]+)\)/.exec(first.answers[0]!)![1]!
    expect((await signInThroughBrowser(loginUrl, 'dify-user-1')).status).toBe(200)

    let prompt = ''
    const run = await runWorkflow({
      sys: { user_id: 'dify-user-1', query: 'who am I?' },
      env,
      llm(messages) {
        prompt = messages.map((message) => message.text).join('\n')
        return 'Here you go:\n```json\n{"tool_ref": "docs::whoami", "input": {}}\n```'
      },
    })
    expect(prompt).toContain('"tool_ref":"docs::whoami"')
    expect(prompt).toContain('who am I?')
    expect(run.path).toEqual(['start', 'auth_status', 'read_status', 'signed_in', 'list_tools', 'choose_tool', 'read_choice', 'has_tool', 'call_tool', 'read_result', 'answer'])
    expect(JSON.parse(run.answers[0]!)).toMatchObject({ sub: 'dify-user-1' })

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
