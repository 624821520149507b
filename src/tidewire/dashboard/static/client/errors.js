// @ts-check
/**
 * Errors of the Tidewire JavaScript client (the classes of `tidewire.client.errors`).
 *
 * Every failure the client reports is a `TidewireError`, so one `instanceof` separates the
 * client's own failures from bugs in handlers.
 */

export class TidewireError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "TidewireError";
  }
}

/** The connection ended (or never opened) and the client will not, or did not yet, recover. */
export class ConnectionClosedError extends TidewireError {
  /**
   * @param {string} message
   * @param {{code?: number | null, reason?: string}} [details]
   */
  constructor(message, details = {}) {
    super(message);
    this.name = "ConnectionClosedError";
    /** Close code of the connection, when one ended. */
    this.code = details.code ?? null;
    /** Close reason sent by the gateway ("" when none). */
    this.reason = details.reason ?? "";
  }
}

/** The gateway refused the credentials (close 4001): retrying with them cannot succeed. */
export class AuthenticationError extends ConnectionClosedError {
  /**
   * @param {string} message
   * @param {{code?: number | null, reason?: string}} [details]
   */
  constructor(message, details = {}) {
    super(message, details);
    this.name = "AuthenticationError";
  }
}

/** `messageQueueSize` commands already wait for a connection: the new one is refused. */
export class QueueFull extends TidewireError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "QueueFull";
  }
}

/** A request was not answered in time. */
export class RequestTimeout extends TidewireError {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "RequestTimeout";
  }
}

/** An `error` reply of the gateway (docs/protocol.md section 6). */
export class ServerError extends TidewireError {
  /**
   * @param {string} errorCode
   * @param {string} errorMessage
   * @param {{retryable?: boolean, details?: Record<string, unknown> | null}} [extra]
   */
  constructor(errorCode, errorMessage, extra = {}) {
    super(`${errorCode}: ${errorMessage}`);
    this.name = "ServerError";
    this.errorCode = errorCode;
    this.errorMessage = errorMessage;
    this.retryable = extra.retryable ?? false;
    this.details = extra.details ?? null;
  }

  /** @param {Record<string, any>} reply an `error` or `subscription_error` reply */
  static fromReply(reply) {
    return new this(String(reply.error_code ?? "internal_error"), String(reply.error_message ?? ""), {
      retryable: reply.retryable === true,
      details: reply.details ?? null,
    });
  }
}

/** A `subscription_error` reply: the gateway refused a subscription (or its resubscription). */
export class SubscriptionError extends ServerError {
  /**
   * @param {string} errorCode
   * @param {string} errorMessage
   * @param {{retryable?: boolean, details?: Record<string, unknown> | null}} [extra]
   */
  constructor(errorCode, errorMessage, extra = {}) {
    super(errorCode, errorMessage, extra);
    this.name = "SubscriptionError";
    /** @type {string | null} */
    this.subscriptionId = null;
  }
}

/** The token provider failed, returned no usable token, or a refresh was refused. */
export class TokenError extends TidewireError {
  /**
   * @param {string} message
   * @param {unknown} [cause] the provider's error, or the gateway's refusal (`ServerError`)
   */
  constructor(message, cause) {
    super(message);
    this.name = "TokenError";
    if (cause !== undefined) this.cause = cause;
    /** `error_code` of the gateway's refusal, when it refused. */
    this.errorCode = cause instanceof Error && "errorCode" in cause ? String(cause.errorCode) : null;
  }
}
