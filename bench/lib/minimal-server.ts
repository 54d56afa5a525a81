/**
 * The throughput bench's server: the smallest correct OpenAI Chat Completions endpoint. Every POST
 * gets the same pre-serialised `chat.completion` body (keep-alive, content-length), so the server
 * costs as little as possible and the clients under test are what is measured. Prints
 * `READY <port>` when listening. Run in its own process (see bench/throughput.ts).
 */
import * as http from "node:http"
import { serve } from "./serve.js"

const body = Buffer.from(JSON.stringify({
  id: "chatcmpl-bench",
  object: "chat.completion",
  created: 1_700_000_000,
  model: "gpt-4o-mini",
  choices: [{
    index: 0,
    message: { role: "assistant", content: "{\"answer\":42}", refusal: null },
    logprobs: null,
    finish_reason: "stop"
  }],
  usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
  system_fingerprint: "fp_bench"
}))

const headers = {
  "content-type": "application/json",
  "content-length": String(body.length),
  "x-request-id": "req_bench"
}

const server = http.createServer((req, res) => {
  // Drain the request body before answering, as a real server must.
  req.on("data", () => {})
  req.on("end", () => {
    res.writeHead(200, headers)
    res.end(body)
  })
})
server.keepAliveTimeout = 60_000
server.headersTimeout = 65_000

serve(server)
