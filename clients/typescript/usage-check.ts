// Type-checks the generated declarations by using them: tests/protocol/test_schema.py
// compiles this file with tsc --strict --exactOptionalPropertyTypes next to a freshly
// generated tidewire-protocol.d.ts. Every `@ts-expect-error` must meet its error.
import type {
  AnyDataMessage, ClientCommand, CloseCode, CloseCodes, ErrorCode, Filters, MarketDataMessage,
  MarketDataPayload, MessageByType, MessageType, OrderUpdateMessage, PayloadByType,
  ServerMessage, ServerReply, StreamFilters, StreamName, Subscribe, TypedDataMessage,
  WithDecimalStrings,
} from "./tidewire-protocol";

export function describe(reply: ServerReply): string {
  switch (reply.type) {
    case "subscription_confirmed":
      return `${reply.topic} at ${reply.position.epoch}:${reply.position.seq}`;
    case "subscription_error":
    case "error":
      return reply.error_code;
    case "heartbeat_response":
      return String(reply.client_timestamp ?? 0);
    case "snapshot":
      return reply.messages.map((m) => m.type).join(",");
    case "trade_history":
      return reply.trades.map((t) => t.data.trade_id).join(",");
    default:
      return reply.type;
  }
}

export function avgPrice(message: TypedDataMessage): number | undefined {
  if (message.type === "position_update") {
    const stream: "position_updates" = message.stream;
    const side: "long" | "short" | "flat" = message.position_side;
    return stream && side ? message.data.avg_price : undefined;
  }
  if (message.type === "market_data" && message.data_type === "quote") {
    return ((message.data.bid_price ?? 0) + (message.data.ask_price ?? 0)) / 2;
  }
  return undefined;
}

export function orderLine(message: OrderUpdateMessage): string {
  const seq: number = message.seq;
  const remaining: number = message.data.remaining_quantity;
  return `${seq} ${message.order_id} ${message.symbol} ${message.order_status} ${remaining}`;
}

export function route(frame: ServerMessage): string {
  if (frame.type === "batch") {
    return "batch";
  }
  if (frame.type === "order_update") {
    return frame.order_id;
  }
  if (frame.type === "engine_status") {
    return frame.data.state;
  }
  return frame.type;
}

export const subscribe: Subscribe = {
  type: "subscribe",
  stream: "market_data",
  filters: { symbols: ["AAPL"], min_price: 1 },
};
export const commands: ClientCommand[] = [
  subscribe,
  { type: "ping" },
  { type: "heartbeat", client_timestamp: 1 },
  { type: "heartbeat", client_timestamp: "2026-01-01T00:00:00Z" },
  { type: "unsubscribe", subscription_ids: ["s1"] },
  { type: "update_subscription", subscription_id: "s1", rate_limit: 0 },
  { type: "get_snapshot", stream: "market_data", limit: 10 },
  { type: "get_trade_history", limit: 5 },
  { type: "sync", client_timestamp: 1 },
  { type: "subscribe", event_types: ["trade_executed"] },
];
export const stream: StreamName = "risk_alerts";
export const code: ErrorCode = "invalid_filter";
export const slow: CloseCode = 4008 satisfies CloseCodes["SLOW_CONSUMER"];
export const quoteFilters: StreamFilters<"market_data"> = { symbols: ["A"], min_price: 1 };
export const decimalQuote: WithDecimalStrings<MarketDataPayload> = {
  bid_price: "1.10",
  ask_price: 1.2,
  timestamp: "t",
};
export const severityFilter: Filters = { severity: "high" };
export const alertType: MessageType = "breach_alert";
export const riskData: PayloadByType["risk_alert"] = {
  metric: "var",
  current_value: 2,
  threshold: 1,
  message: "var above 1",
  timestamp: "t",
};
export const sameInterface: MessageByType["order_update"] extends OrderUpdateMessage
  ? true
  : false = true;
export const quote: MarketDataMessage = {
  type: "market_data",
  stream: "market_data",
  version: "3.0",
  timestamp: "t",
  message_id: "m",
  key: "AAPL",
  seq: 1,
  epoch: "e",
  sequence: 1,
  source: "api",
  symbol: "AAPL",
  data_type: "quote",
  data: { bid_price: 1, ask_price: 1.1, timestamp: "t" },
};
export const anyMessage: AnyDataMessage = quote;

export const badFilter: Subscribe = {
  type: "subscribe",
  stream: "market_data",
  // @ts-expect-error an unknown filter name
  filters: { symbolz: ["AAPL"] },
};
// @ts-expect-error severity is one of four levels
export const badSeverity: Filters = { severity: "urgent" };
// @ts-expect-error `subscription_id` is required on update_subscription
export const missingId: ClientCommand = { type: "update_subscription" };
// @ts-expect-error not a stream name
export const notStream: StreamName = "market";
// @ts-expect-error market_data has no portfolio_ids filter
export const foreignFilter: StreamFilters<"market_data"> = { portfolio_ids: ["P"] };
// @ts-expect-error 4999 is no close code
export const notClose: CloseCode = 4999;
// @ts-expect-error payloads declare only the fields the protocol knows
export const notNumber: number = riskData.extra_field;
// @ts-expect-error a risk alert needs `threshold`
export const incomplete: PayloadByType["risk_alert"] = {
  metric: "var",
  current_value: 2,
  message: "m",
  timestamp: "t",
};
// @ts-expect-error `data_type` is one of four kinds
export const badKind: MarketDataMessage = { ...quote, data_type: "candle" };
// @ts-expect-error a market data message has no other `type`
export const wrongType: MarketDataMessage = { ...quote, type: "order_update" };
// @ts-expect-error an order update needs its top-level `order_id`
export const noOrderId: OrderUpdateMessage = {
  ...quote,
  type: "order_update",
  stream: "order_updates",
  symbol: "AAPL",
  order_status: "open",
  data: { side: "buy", quantity: 1, filled_quantity: 0, remaining_quantity: 1, timestamp: "t" },
};
export function quoteSize(message: MarketDataMessage): number {
  // @ts-expect-error `data` is the market data payload: it has no `trade_id`
  return message.data.trade_id;
}
